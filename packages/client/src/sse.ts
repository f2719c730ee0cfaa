/**
 * A small `text/event-stream` parser over a fetch body, following the WHATWG server-sent
 * events rules: fields `event`, `data` (several lines joined with "\n") and `id`; lines
 * starting with ":" are comments (keep-alives); a blank line dispatches the event; CRLF, LF and
 * CR all end a line. No EventSource dependency, so it runs wherever `fetch` streams bodies.
 */
export interface SseEvent {
  event: string;
  data: string;
  id: string | undefined;
}

const LINE_END = /\r\n|\n|\r/;

/**
 * Yields each dispatched event. `onActivity` is called for every chunk received, comments
 * included, so a caller can detect a silent (half-open) connection.
 */
export async function* parseEventStream(
  body: ReadableStream<Uint8Array>,
  onActivity?: () => void,
): AsyncGenerator<SseEvent, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let ended = false;
  let event = '';
  let data: string[] = [];
  let id: string | undefined;
  let lastId: string | undefined;

  function* takeLines(): Generator<string> {
    for (;;) {
      const match = LINE_END.exec(buffer);
      if (!match) return;
      // A CR at the end of the buffer may be the first half of a CRLF split across chunks.
      if (match[0] === '\r' && match.index === buffer.length - 1 && !ended) return;
      yield buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
    }
  }

  function* feed(): Generator<SseEvent> {
    for (const line of takeLines()) {
      if (line === '') {
        if (data.length > 0) {
          if (id !== undefined) lastId = id;
          yield { event: event || 'message', data: data.join('\n'), id: lastId };
        }
        event = '';
        data = [];
        id = undefined;
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id' && !value.includes('\0')) id = value;
      // `retry` and unknown fields are ignored.
    }
  }

  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        ended = true;
        buffer += decoder.decode();
        // An event not closed by a blank line before the stream ends is dropped (per the standard).
        yield* feed();
        return;
      }
      onActivity?.();
      buffer += decoder.decode(value, { stream: true });
      yield* feed();
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}
