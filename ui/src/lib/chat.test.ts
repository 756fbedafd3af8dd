import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { chat } from './chat.svelte';
import { app } from './app.svelte';
import type { Message } from './types';

type Handler = (url: string, init: RequestInit) => Response | Promise<Response>;

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

function sse(events: unknown[]): Response {
  const text = events.map((event) => `data: ${JSON.stringify(event)}\n\n`).join('');
  const bytes = new TextEncoder().encode(text);
  return new Response(
    new ReadableStream({
      start(controller) {
        for (let index = 0; index < bytes.length; index += 11) controller.enqueue(bytes.slice(index, index + 11));
        controller.close();
      },
    }),
    { headers: { 'Content-Type': 'text/event-stream' } },
  );
}

function message(id: number, role: Message['role'], content: string, extra: Partial<Message> = {}): Message {
  return { id, conversation_id: 1, role, content, status: 'complete', metrics: null, created_at: 0, updated_at: 0, ...extra };
}

let routes: Record<string, Handler>;
const calls: string[] = [];

beforeEach(() => {
  calls.length = 0;
  routes = {};
  vi.stubGlobal('fetch', async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = String(input);
    const key = `${init.method ?? 'GET'} ${url.split('?')[0]}`;
    calls.push(key);
    const handler = routes[key];
    if (!handler) return json({ error: { message: 'no route', code: 'unknown_url' } }, 404);
    return handler(url, init);
  });
  app.servable = ['tiny'];
  routes['GET /api/conversations'] = () => json({ object: 'list', data: [] });
});

afterEach(() => {
  vi.unstubAllGlobals();
});

const conversation = { id: 1, title: '', model: 'tiny', system_prompt: null, settings: null, created_at: 0, updated_at: 0, deleted_at: null };

describe('chat session', () => {
  it('creates the conversation on the first message and streams the answer into it', async () => {
    await chat.open(null);
    chat.setSystemPrompt('Be brief.');
    routes['POST /api/conversations'] = (_url, init) => {
      expect(JSON.parse(String(init.body))).toMatchObject({ model: 'tiny', system_prompt: 'Be brief.' });
      return json(conversation, 201);
    };
    const answer = message(3, 'assistant', 'Hello there', {
      metrics: { ttft_ms: 50, decode_tokens_per_s: 80, completion_tokens: 2, prompt_tokens: 10 },
    });
    routes['POST /api/conversations/1/messages'] = (_url, init) => {
      expect(JSON.parse(String(init.body))).toEqual({ content: 'Hi', model: 'tiny' });
      return sse([
        { type: 'start', user_message: message(2, 'user', 'Hi'), assistant_message: message(3, 'assistant', '', { status: 'streaming' }), prompt_tokens: 10, dropped_messages: 1, n_ctx: 4096 },
        { type: 'token', text: 'Hello' },
        { type: 'token', text: ' there' },
        { type: 'done', message: answer },
      ]);
    };
    routes['GET /api/conversations/1'] = () => json({ ...conversation, title: 'Hi', messages: [message(2, 'user', 'Hi'), answer] });

    expect(await chat.send('  Hi  ')).toBe(true);
    expect(chat.streaming).toBe(false);
    expect(chat.droppedMessages).toBe(1);
    expect(chat.contextUsed).toBe(12);
    expect(chat.contextLimit).toBe(4096);
    const messages = chat.conversation?.messages ?? [];
    expect(messages.map((m) => [m.id, m.role, m.content])).toEqual([
      [2, 'user', 'Hi'],
      [3, 'assistant', 'Hello there'],
    ]);
    expect(messages[1]?.metrics?.decode_tokens_per_s).toBe(80);
    await vi.waitFor(() => expect(chat.conversation?.title).toBe('Hi'));
  });

  it('puts everything back when the server refuses a regenerate', async () => {
    routes['GET /api/conversations/1'] = () =>
      json({ ...conversation, messages: [message(2, 'user', 'Hi'), message(3, 'assistant', 'Hello')] });
    await chat.open(null);
    await chat.open(1);
    expect(chat.conversation?.messages).toHaveLength(2);
    await chat.regenerate();
    expect(calls).toContain('POST /api/conversations/1/regenerate');
    expect(chat.conversation?.messages.map((m) => m.content)).toEqual(['Hi', 'Hello']);
    expect(chat.notice).toMatch(/does not offer this yet/);
    expect(chat.streaming).toBe(false);
  });

  it('edits a question: later messages go and the new answer streams in', async () => {
    routes['GET /api/conversations/1'] = () =>
      json({ ...conversation, messages: [message(2, 'user', 'Name a fruit.'), message(3, 'assistant', 'Apple')] });
    await chat.open(null);
    await chat.open(1);
    routes['POST /api/conversations/1/messages/2/edit'] = (_url, init) => {
      expect(JSON.parse(String(init.body))).toEqual({ content: 'Name a vegetable.', model: 'tiny' });
      return sse([
        { type: 'start', user_message: message(2, 'user', 'Name a vegetable.'), assistant_message: message(4, 'assistant', '', { status: 'streaming' }), prompt_tokens: 9, dropped_messages: 0 },
        { type: 'token', text: 'Carrot' },
        { type: 'done', message: message(4, 'assistant', 'Carrot', { metrics: { completion_tokens: 1 } }) },
      ]);
    };
    await chat.edit(2, 'Name a vegetable.');
    expect(chat.conversation?.messages.map((m) => [m.id, m.content])).toEqual([
      [2, 'Name a vegetable.'],
      [4, 'Carrot'],
    ]);
  });

  it('marks an answer that failed mid-stream with the server error', async () => {
    routes['GET /api/conversations/1'] = () => json({ ...conversation, messages: [] });
    await chat.open(null);
    await chat.open(1);
    routes['POST /api/conversations/1/messages'] = () =>
      sse([
        { type: 'start', user_message: message(2, 'user', 'Hi'), assistant_message: message(3, 'assistant', '', { status: 'streaming' }), prompt_tokens: 3, dropped_messages: 0 },
        { type: 'token', text: 'Hel' },
        { type: 'error', error: { message: 'The model crashed.', code: 'model_crashed' }, message: message(3, 'assistant', 'Hel', { status: 'error' }) },
      ]);
    await chat.send('Hi');
    const answer = chat.conversation?.messages.at(-1);
    expect(answer?.status).toBe('error');
    expect(answer?.notice).toBe('The model crashed.');
    expect(answer?.content).toBe('Hel');
  });

  it('streams a thinking model\'s thinking apart from its answer, counting it and timing it', async () => {
    routes['GET /api/conversations/1'] = () => json({ ...conversation, messages: [] });
    await chat.open(null);
    await chat.open(1);
    routes['POST /api/conversations/1/messages'] = () =>
      sse([
        { type: 'start', user_message: message(2, 'user', '2+2?'), assistant_message: message(3, 'assistant', '', { status: 'streaming' }), prompt_tokens: 3, dropped_messages: 0 },
        { type: 'reasoning', text: 'Two and' },
        { type: 'reasoning', text: ' two.' },
        { type: 'token', text: 'Four.' },
        // Cut off before `done`: what the page built from the events stays.
        { type: 'error', error: { message: 'The model crashed.', code: 'model_crashed' } },
      ]);
    await chat.send('2+2?');
    const answer = chat.conversation?.messages.at(-1);
    expect(answer?.reasoning).toBe('Two and two.');
    expect(answer?.reasoning_tokens).toBe(2);
    expect(answer?.reasoning_ms).toBeGreaterThanOrEqual(0);
    expect(answer?.content).toBe('Four.');
    expect(chat.thinkingSince).toBeNull();
  });

  it('takes the saved thinking, with the server\'s count and time, once the answer is done', async () => {
    routes['GET /api/conversations/1'] = () => json({ ...conversation, messages: [] });
    await chat.open(null);
    await chat.open(1);
    const saved = message(3, 'assistant', 'Four.', { reasoning: 'Two and two.', reasoning_tokens: 4, reasoning_ms: 3200 });
    routes['POST /api/conversations/1/messages'] = () =>
      sse([
        { type: 'start', user_message: message(2, 'user', '2+2?'), assistant_message: message(3, 'assistant', '', { status: 'streaming' }), prompt_tokens: 3, dropped_messages: 0 },
        { type: 'reasoning', text: 'Two and two.' },
        { type: 'token', text: 'Four.' },
        { type: 'done', message: saved },
      ]);
    routes['GET /api/conversations/1'] = () => json({ ...conversation, messages: [message(2, 'user', '2+2?'), saved] });
    await chat.send('2+2?');
    await vi.waitFor(() => expect(chat.conversation?.messages.at(-1)?.reasoning_ms).toBe(3200));
    expect(chat.conversation?.messages.at(-1)?.reasoning_tokens).toBe(4);
  });

  it('asks before the first message to a remote provider, and sends it only once agreed', async () => {
    routes['GET /api/conversations/1'] = () => json({ ...conversation, model: 'lab/big', messages: [] });
    await chat.open(null);
    await chat.open(1);
    const bodies: unknown[] = [];
    routes['POST /api/conversations/1/messages'] = (_url, init) => {
      const body = JSON.parse(String(init.body));
      bodies.push(body);
      if (!body.confirm_remote) {
        return json(
          { error: { message: 'This message would leave this machine: the model runs on the provider `lab` (gpu:8000). Send it again with confirm_remote: true to agree.', code: 'remote_confirmation_required' } },
          409,
        );
      }
      return sse([
        { type: 'start', user_message: message(2, 'user', 'Hi'), assistant_message: message(3, 'assistant', '', { status: 'streaming' }), prompt_tokens: 3, dropped_messages: 0 },
        { type: 'token', text: 'Hello' },
        { type: 'done', message: message(3, 'assistant', 'Hello', { metrics: { provider: 'lab' } }) },
      ]);
    };
    const sending = chat.send('Hi');
    await vi.waitFor(() => expect(chat.remoteConfirmation).not.toBeNull());
    expect(chat.remoteConfirmation?.message).toContain('`lab`');
    expect(bodies).toHaveLength(1);
    chat.remoteConfirmation?.answer(true);
    await sending;
    expect(chat.remoteConfirmation).toBeNull();
    expect(bodies).toEqual([
      { content: 'Hi', model: 'lab/big' },
      { content: 'Hi', model: 'lab/big', confirm_remote: true },
    ]);
    expect(chat.conversation?.messages.at(-1)?.content).toBe('Hello');
  });

  it('sends nothing when the user declines a remote provider', async () => {
    routes['GET /api/conversations/1'] = () => json({ ...conversation, model: 'lab/big', messages: [] });
    await chat.open(null);
    await chat.open(1);
    let posts = 0;
    routes['POST /api/conversations/1/messages'] = () => {
      posts += 1;
      return json({ error: { message: 'This message would leave this machine.', code: 'remote_confirmation_required' } }, 409);
    };
    const sending = chat.send('Secret');
    await vi.waitFor(() => expect(chat.remoteConfirmation).not.toBeNull());
    chat.remoteConfirmation?.answer(false);
    await sending;
    expect(posts).toBe(1);
    expect(chat.conversation?.messages ?? []).toHaveLength(0);
    expect(chat.restoreDraft).toBe('Secret');
  });
});
