import { describe, expect, it } from 'vitest';
import { ApiClient, ApiError, errorMessage } from './api';
import type { ChatEvent } from './types';

interface Call {
  url: string;
  init: RequestInit;
}

function fakeFetch(answer: (call: Call) => Response | Promise<Response>) {
  const calls: Call[] = [];
  const fetchImpl = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const call = { url: String(input), init: init ?? {} };
    calls.push(call);
    return answer(call);
  }) as typeof fetch;
  return { calls, fetchImpl };
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  });
}

function header(call: Call, name: string): string | null {
  return new Headers(call.init.headers).get(name);
}

describe('ApiClient', () => {
  it('sends the bearer token and JSON body to the configured base', async () => {
    const { calls, fetchImpl } = fakeFetch(() => json({ id: 3, title: 'Renamed' }));
    const client = new ApiClient({ base: 'http://127.0.0.1:4327/', token: () => 'secret', fetch: fetchImpl });
    const conversation = await client.updateConversation(3, { title: 'Renamed' });
    expect(conversation.title).toBe('Renamed');
    expect(calls[0]!.url).toBe('http://127.0.0.1:4327/api/conversations/3');
    expect(calls[0]!.init.method).toBe('PATCH');
    expect(header(calls[0]!, 'Authorization')).toBe('Bearer secret');
    expect(header(calls[0]!, 'Content-Type')).toBe('application/json');
    expect(JSON.parse(String(calls[0]!.init.body))).toEqual({ title: 'Renamed' });
  });

  it('sends no Authorization header without a token', async () => {
    const { calls, fetchImpl } = fakeFetch(() => json({ object: 'list', data: [] }));
    const client = new ApiClient({ base: '', token: () => null, fetch: fetchImpl });
    expect(await client.listConversations('  rust  ')).toEqual([]);
    expect(calls[0]!.url).toBe('/api/conversations?search=rust');
    expect(header(calls[0]!, 'Authorization')).toBeNull();
  });

  it('turns an OpenAI error object into an ApiError', async () => {
    const { fetchImpl } = fakeFetch(() =>
      json({ error: { message: 'There is no such conversation.', type: 'invalid_request_error', param: null, code: 'conversation_not_found' } }, 404),
    );
    const client = new ApiClient({ base: '', token: () => null, fetch: fetchImpl });
    const error = await client.getConversation(9).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(404);
    expect((error as ApiError).code).toBe('conversation_not_found');
    expect((error as ApiError).isMissingEndpoint).toBe(false);
    expect(errorMessage(error)).toBe('There is no such conversation.');
  });

  it('tells a missing endpoint (an older server) apart', async () => {
    const { fetchImpl } = fakeFetch(() => json({ error: { message: 'Unknown route', code: 'unknown_url' } }, 404));
    const client = new ApiClient({ base: '', token: () => null, fetch: fetchImpl });
    const error = (await client.system().catch((caught: unknown) => caught)) as ApiError;
    expect(error.isMissingEndpoint).toBe(true);
    expect(errorMessage(error)).toMatch(/does not offer this yet/);
  });

  it('reports an answer that is not JSON by its status', async () => {
    const { fetchImpl } = fakeFetch(() => new Response('gateway down', { status: 502, statusText: 'Bad Gateway' }));
    const client = new ApiClient({ base: '', token: () => null, fetch: fetchImpl });
    const error = (await client.settings().catch((caught: unknown) => caught)) as ApiError;
    expect(error.status).toBe(502);
    expect(error.message).toBe('The server answered 502 Bad Gateway.');
  });

  it('reports an unreachable server as a network error', async () => {
    const client = new ApiClient({
      base: '',
      token: () => null,
      fetch: (async () => {
        throw new TypeError('Failed to fetch');
      }) as typeof fetch,
    });
    const error = (await client.listModels().catch((caught: unknown) => caught)) as ApiError;
    expect(error.isNetwork).toBe(true);
    expect(error.message).toMatch(/Cannot reach the Hearth server/);
  });

  it('streams chat events from a body split across chunks', async () => {
    const text =
      'data: {"type":"start","prompt_tokens":5,"dropped_messages":1,"n_ctx":4096}\n\n' +
      'data: {"type":"token","text":"Hel"}\n\ndata: {"type":"token","text":"lo"}\n\n' +
      'data: {"type":"done","message":{"id":2,"content":"Hello"}}\n\n';
    const bytes = new TextEncoder().encode(text);
    const { calls, fetchImpl } = fakeFetch(
      () =>
        new Response(
          new ReadableStream({
            start(controller) {
              for (let index = 0; index < bytes.length; index += 7) controller.enqueue(bytes.slice(index, index + 7));
              controller.close();
            },
          }),
          { headers: { 'Content-Type': 'text/event-stream' } },
        ),
    );
    const client = new ApiClient({ base: '', token: () => 't', fetch: fetchImpl });
    const events: ChatEvent[] = [];
    await client.sendMessage(4, 'Hi', 'smollm2', (event) => events.push(event));
    expect(calls[0]!.url).toBe('/api/conversations/4/messages');
    expect(JSON.parse(String(calls[0]!.init.body))).toEqual({ content: 'Hi', model: 'smollm2' });
    expect(header(calls[0]!, 'Accept')).toBe('text/event-stream');
    expect(events.map((event) => event.type)).toEqual(['start', 'token', 'token', 'done']);
    expect(events.filter((event) => event.type === 'token').map((event) => (event as { text: string }).text).join('')).toBe('Hello');
  });

  it('rejects a stream refused before it starts with the server error', async () => {
    const { fetchImpl } = fakeFetch(() =>
      json({ error: { message: 'The model is loading.', code: 'model_loading' } }, 503, { 'Retry-After': '2' }),
    );
    const client = new ApiClient({ base: '', token: () => null, fetch: fetchImpl });
    const error = (await client.regenerate(1, null, () => {}).catch((caught: unknown) => caught)) as ApiError;
    expect(error.status).toBe(503);
    expect(error.code).toBe('model_loading');
    expect(error.retryAfter).toBe(2);
  });

  it('downloads an export with the name the server gives', async () => {
    const { calls, fetchImpl } = fakeFetch(
      () =>
        new Response('# Title', {
          headers: { 'Content-Type': 'text/markdown', 'Content-Disposition': 'attachment; filename="conversation-7.md"' },
        }),
    );
    const client = new ApiClient({ base: '', token: () => null, fetch: fetchImpl });
    const file = await client.exportConversation(7, 'markdown');
    expect(calls[0]!.url).toBe('/api/conversations/7/export?format=markdown');
    expect(file.filename).toBe('conversation-7.md');
    expect(await file.blob.text()).toBe('# Title');
  });

  it('never takes a path from Content-Disposition', async () => {
    const { fetchImpl } = fakeFetch(
      () => new Response('{}', { headers: { 'Content-Disposition': 'attachment; filename="../../etc/passwd"' } }),
    );
    const client = new ApiClient({ base: '', token: () => null, fetch: fetchImpl });
    expect((await client.exportConversation(2, 'json')).filename).toBe('conversation-2.json');
  });

  it('fills a models listing from an older server without fit or recommendation', async () => {
    const { fetchImpl } = fakeFetch(() => json({ models: [{ id: 'a' }], catalog: [] }));
    const client = new ApiClient({ base: '', token: () => null, fetch: fetchImpl });
    expect(await client.listModels()).toEqual({ models: [{ id: 'a' }], broken: [], catalog: [], recommendation: null });
  });

  it('treats 204 as no body', async () => {
    const { fetchImpl } = fakeFetch(() => new Response(null, { status: 204 }));
    const client = new ApiClient({ base: '', token: () => null, fetch: fetchImpl });
    await expect(client.deleteConversation(1)).resolves.toBeUndefined();
  });
});
