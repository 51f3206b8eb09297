/** An event whose JSON is already written (a streamed chunk built from a pre-serialised envelope). */
export class SerializedEvent {
  constructor(readonly json: string) {}
}

/** Resolved by `setImmediate`: the event loop has finished what it was doing when this was asked for. */
const TURN_OVER = Symbol("turn over");
const turnOver = () => new Promise<typeof TURN_OVER>((resolve) => setImmediate(resolve, TURN_OVER));

const frame = (event: unknown) => `data: ${event instanceof SerializedEvent ? event.json : JSON.stringify(event)}\n\n`;

/**
 * A text/event-stream response fed by an async iterable of JSON events, ending with `data: [DONE]`.
 * When the client goes away the stream is cancelled and `onClose` runs (it also runs on normal end).
 *
 * Each event stays its own `data:` line (one chunk per piece, as OpenAI streams), but every event that is
 * ready before the event loop moves on goes out in one write: the pieces of a request's n choices decoded in
 * one batch, or the last piece with the finish chunk, the usage chunk and `[DONE]`. Each write is a syscall
 * and, on loopback, the client's wake-up too; waiting for the turn to end adds no decode step.
 */
export function sseResponse(events: AsyncIterable<unknown>, onClose: () => void): Response {
  const encoder = new TextEncoder();
  const iterator = events[Symbol.asyncIterator]();
  // A `next()` asked for while gathering but not ready this turn: the following pull starts with it.
  let pending: Promise<IteratorResult<unknown>> | undefined;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    onClose();
  };
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let text = "";
      try {
        let next = await (pending ?? iterator.next());
        pending = undefined;
        const turn = turnOver();
        while (!next.done) {
          text += frame(next.value);
          const following = iterator.next();
          // Handled here so that a failure after the client left is not an unhandled rejection; a pull that
          // awaits it still sees the error.
          following.catch(() => undefined);
          const ready = await Promise.race([following, turn]);
          if (ready === TURN_OVER) {
            pending = following;
            break;
          }
          next = ready;
        }
        if (next.done) {
          controller.enqueue(encoder.encode(`${text}data: [DONE]\n\n`));
          controller.close();
          close();
          return;
        }
        controller.enqueue(encoder.encode(text));
      } catch (error) {
        // Headers are gone already: report the failure in-band, then end the stream properly.
        const message = error instanceof Error ? error.message : String(error);
        const envelope = { error: { message, type: "server_error", param: null, code: "generation_failed" } };
        controller.enqueue(encoder.encode(`${text}data: ${JSON.stringify(envelope)}\n\ndata: [DONE]\n\n`));
        controller.close();
        close();
      }
    },
    async cancel() {
      close();
      await iterator.return?.();
    },
  });
  return new Response(stream, {
    headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: "keep-alive" },
  });
}
