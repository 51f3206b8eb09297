import { SerializedEvent } from "../http/sse.js";

/** The fields every chunk of one streamed response repeats, in the order they are written. */
export interface ChunkEnvelope {
  readonly id: string;
  readonly object: string;
  readonly created: number;
  readonly model: string;
}

/**
 * Streamed chunks `{...envelope, choices: [choice], usage: null (when usage was asked for)}` from the choice's
 * JSON: the envelope is serialised once per response instead of once per piece. The text is what
 * `JSON.stringify` writes for the same object.
 */
export function chunkWriter(envelope: ChunkEnvelope, includeUsage: boolean): (choiceJson: string) => SerializedEvent {
  const { id, object, created, model } = envelope;
  const head = `${JSON.stringify({ id, object, created, model }).slice(0, -1)},"choices":[`;
  const tail = includeUsage ? '],"usage":null}' : "]}";
  return (choiceJson) => new SerializedEvent(head + choiceJson + tail);
}
