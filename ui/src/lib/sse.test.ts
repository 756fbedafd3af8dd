import { describe, expect, it } from 'vitest';
import { SseParser, readSseJson } from './sse';

const STREAM =
  'data: {"type":"start","prompt_tokens":12}\n\n' +
  ': a comment\r\n' +
  'data: {"type":"token","text":"Hé"}\r\n\r\n' +
  'event: custom\rdata: line one\rdata: line two\r\r' +
  'data:{"type":"done"}\n\n';

function parseInChunks(text: string, cuts: number[]): { event: string; data: string }[] {
  const parser = new SseParser();
  const events = [];
  let previous = 0;
  for (const cut of [...cuts, text.length]) {
    events.push(...parser.push(text.slice(previous, cut)));
    previous = cut;
  }
  events.push(...parser.finish());
  return events.map(({ event, data }) => ({ event, data }));
}

describe('SseParser', () => {
  const expected = [
    { event: 'message', data: '{"type":"start","prompt_tokens":12}' },
    { event: 'message', data: '{"type":"token","text":"Hé"}' },
    { event: 'custom', data: 'line one\nline two' },
    { event: 'message', data: '{"type":"done"}' },
  ];

  it('parses a whole stream', () => {
    expect(parseInChunks(STREAM, [])).toEqual(expected);
  });

  it('gives the same events whatever the chunk boundaries', () => {
    for (let cut = 1; cut < STREAM.length; cut++) {
      expect(parseInChunks(STREAM, [cut])).toEqual(expected);
    }
    for (let first = 1; first < STREAM.length; first += 3) {
      for (let second = first + 1; second < STREAM.length; second += 5) {
        expect(parseInChunks(STREAM, [first, second])).toEqual(expected);
      }
    }
  });

  it('parses a stream fed one character at a time', () => {
    const cuts = Array.from({ length: STREAM.length - 1 }, (_, index) => index + 1);
    expect(parseInChunks(STREAM, cuts)).toEqual(expected);
  });

  it('dispatches a last event without a trailing blank line on finish', () => {
    const parser = new SseParser();
    expect(parser.push('data: tail')).toEqual([]);
    expect(parser.finish()).toEqual([{ event: 'message', data: 'tail' }]);
  });

  it('ignores blank events and keeps the last id', () => {
    const parser = new SseParser();
    expect(parser.push('\n\nid: 7\ndata: x\n\n')).toEqual([{ event: 'message', data: 'x', id: '7' }]);
  });
});

function byteStream(bytes: Uint8Array, cuts: number[]): ReadableStream<Uint8Array> {
  const pieces: Uint8Array[] = [];
  let previous = 0;
  for (const cut of [...cuts, bytes.length]) {
    pieces.push(bytes.slice(previous, cut));
    previous = cut;
  }
  return new ReadableStream({
    start(controller) {
      for (const piece of pieces) controller.enqueue(piece);
      controller.close();
    },
  });
}

describe('readSseJson', () => {
  it('parses JSON payloads even when a UTF-8 character is split between chunks', async () => {
    const bytes = new TextEncoder().encode('data: {"text":"é€😀"}\n\ndata: [DONE]\n\n');
    for (let cut = 1; cut < bytes.length; cut++) {
      const payloads: unknown[] = [];
      await readSseJson(byteStream(bytes, [cut]), (payload) => payloads.push(payload));
      expect(payloads).toEqual([{ text: 'é€😀' }, '[DONE]']);
    }
  });

  it('rejects with AbortError when stopped', async () => {
    const controller = new AbortController();
    const body = new ReadableStream<Uint8Array>({
      start(stream) {
        stream.enqueue(new TextEncoder().encode('data: {"n":1}\n\n'));
      },
    });
    const payloads: unknown[] = [];
    const reading = readSseJson(body, (payload) => {
      payloads.push(payload);
      controller.abort();
    }, controller.signal);
    await expect(reading).rejects.toMatchObject({ name: 'AbortError' });
    expect(payloads).toEqual([{ n: 1 }]);
  });
});
