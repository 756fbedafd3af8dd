/**
 * Server-sent events over `fetch` (EventSource cannot send an Authorization header).
 *
 * {@link SseParser} is the pure part: it takes text in chunks split anywhere (inside a line,
 * between `\r` and `\n`, inside a field name) and yields complete events, following the
 * WHATWG event-stream rules that matter here: `data:` lines joined by `\n`, one optional space
 * after the colon, comments (`:`) ignored, events dispatched on a blank line.
 */

export interface SseEvent {
  /** The `event:` field, `message` when absent. */
  event: string;
  data: string;
  id?: string;
}

export class SseParser {
  private buffer = '';
  /** A chunk ended in `\r`: a `\n` at the start of the next one belongs to the same line end. */
  private pendingCarriageReturn = false;
  private dataLines: string[] = [];
  private eventName = '';
  private lastId: string | undefined;

  /** Feeds a chunk of text; returns every event it completed. */
  push(chunk: string): SseEvent[] {
    if (this.pendingCarriageReturn && chunk.startsWith('\n')) {
      chunk = chunk.slice(1);
    }
    this.pendingCarriageReturn = false;
    this.buffer += chunk;
    const events: SseEvent[] = [];
    let start = 0;
    for (let index = 0; index < this.buffer.length; index++) {
      const character = this.buffer[index];
      if (character !== '\n' && character !== '\r') continue;
      const line = this.buffer.slice(start, index);
      if (character === '\r') {
        if (index + 1 < this.buffer.length) {
          if (this.buffer[index + 1] === '\n') index++;
        } else {
          this.pendingCarriageReturn = true;
        }
      }
      start = index + 1;
      const event = this.line(line);
      if (event) events.push(event);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  /** Ends the stream: a last event without its blank line is still dispatched. */
  finish(): SseEvent[] {
    const events: SseEvent[] = [];
    if (this.buffer.length > 0) {
      const event = this.line(this.buffer);
      if (event) events.push(event);
      this.buffer = '';
    }
    const last = this.dispatch();
    if (last) events.push(last);
    return events;
  }

  private line(line: string): SseEvent | null {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.dataLines.push(value);
        break;
      case 'event':
        this.eventName = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastId = value;
        break;
      default:
        break;
    }
    return null;
  }

  private dispatch(): SseEvent | null {
    if (this.dataLines.length === 0) {
      this.eventName = '';
      return null;
    }
    const event: SseEvent = { event: this.eventName || 'message', data: this.dataLines.join('\n') };
    if (this.lastId !== undefined) event.id = this.lastId;
    this.dataLines = [];
    this.eventName = '';
    return event;
  }
}

/**
 * Reads a response body as server-sent events and calls `onEvent` with each `data:` payload
 * parsed as JSON (a payload that is not JSON, such as `[DONE]`, is passed as a string).
 * Resolves when the stream ends; rejects with an `AbortError` when `signal` aborts.
 */
export async function readSseJson(
  body: ReadableStream<Uint8Array>,
  onEvent: (payload: unknown) => void,
  signal?: AbortSignal,
): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder('utf-8');
  const parser = new SseParser();
  const deliver = (events: SseEvent[]) => {
    for (const event of events) {
      let payload: unknown = event.data;
      try {
        payload = JSON.parse(event.data);
      } catch {
        // Not JSON: hand it over as text.
      }
      onEvent(payload);
    }
  };
  const onAbort = () => {
    reader.cancel().catch(() => {});
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      if (signal?.aborted) throw abortError();
      const { value, done } = await reader.read();
      if (signal?.aborted) throw abortError();
      if (done) break;
      // `stream: true` keeps a UTF-8 sequence split between chunks for the next one.
      deliver(parser.push(decoder.decode(value, { stream: true })));
    }
    deliver(parser.push(decoder.decode()));
    deliver(parser.finish());
  } finally {
    signal?.removeEventListener('abort', onAbort);
    try {
      reader.releaseLock();
    } catch {
      // A read still pending after a cancel: the reader is released when it settles.
    }
  }
}

export function abortError(): DOMException {
  return new DOMException('The request was stopped.', 'AbortError');
}

export function isAbortError(error: unknown): boolean {
  return (
    (error instanceof DOMException && error.name === 'AbortError') ||
    (error instanceof Error && error.name === 'AbortError')
  );
}
