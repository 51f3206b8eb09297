/**
 * A text/event-stream response fed by an async iterable of JSON events, ending with `data: [DONE]`.
 * When the client goes away the stream is cancelled and `onClose` runs (it also runs on normal end).
 */
export function sseResponse(events: AsyncIterable<unknown>, onClose: () => void): Response {
  const encoder = new TextEncoder();
  const iterator = events[Symbol.asyncIterator]();
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    onClose();
  };
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = await iterator.next();
        if (next.done) {
          controller.enqueue(encoder.encode("data: [DONE]\n\n"));
          controller.close();
          close();
          return;
        }
        controller.enqueue(encoder.encode(`data: ${JSON.stringify(next.value)}\n\n`));
      } catch (error) {
        // Headers are gone already: report the failure in-band, then end the stream properly.
        const message = error instanceof Error ? error.message : String(error);
        const envelope = { error: { message, type: "server_error", param: null, code: "generation_failed" } };
        controller.enqueue(encoder.encode(`data: ${JSON.stringify(envelope)}\n\ndata: [DONE]\n\n`));
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
