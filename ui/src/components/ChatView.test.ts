import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { flushSync, mount, unmount } from 'svelte';
import ChatView from './ChatView.svelte';
import { app } from '../lib/app.svelte';
import { chat } from '../lib/chat.svelte';

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

describe('ChatView keyboard', () => {
  let component: ReturnType<typeof mount> | null = null;
  const calls: string[] = [];
  let streamAborted = false;

  beforeEach(() => {
    // jsdom has no layout: scrolling is a no-op.
    Element.prototype.scrollTo = () => {};
    calls.length = 0;
    streamAborted = false;
    app.servable = ['tiny'];
    app.modelsLoaded = true;
    app.listing = { models: [], broken: [], catalog: [], recommendation: null };
    vi.stubGlobal('fetch', async (input: RequestInfo | URL, init: RequestInit = {}) => {
      const key = `${init.method ?? 'GET'} ${String(input).split('?')[0]}`;
      calls.push(key);
      if (key === 'POST /api/conversations') {
        return json({ id: 7, title: '', model: 'tiny', system_prompt: null, settings: null, created_at: 0, updated_at: 0, deleted_at: null }, 201);
      }
      if (key === 'POST /api/conversations/7/messages') {
        // An answer that never ends on its own: only Esc stops it.
        const start = `data: ${JSON.stringify({ type: 'start', prompt_tokens: 5, dropped_messages: 0, n_ctx: 2048 })}\n\ndata: {"type":"token","text":"Once"}\n\n`;
        init.signal?.addEventListener('abort', () => (streamAborted = true));
        return new Response(
          new ReadableStream({
            start(controller) {
              controller.enqueue(new TextEncoder().encode(start));
            },
          }),
          { headers: { 'Content-Type': 'text/event-stream' } },
        );
      }
      if (key === 'GET /api/conversations/7') {
        // What the server saved once the client left: the answer so far, stopped.
        const saved = (id: number, role: string, content: string, status: string) => ({
          id, conversation_id: 7, role, content, status, metrics: null, created_at: 0, updated_at: 0,
        });
        return json({
          id: 7, title: 'Hi', model: 'tiny', system_prompt: null, settings: null, created_at: 0, updated_at: 0, deleted_at: null,
          messages: [saved(1, 'user', 'Hi', 'complete'), saved(2, 'assistant', 'Once upon', 'stopped')],
        });
      }
      return json({ object: 'list', data: [] });
    });
  });

  afterEach(() => {
    if (component) unmount(component);
    component = null;
    document.body.innerHTML = '';
    vi.unstubAllGlobals();
  });

  it('Shift+Enter adds a line, Enter sends, Esc stops', async () => {
    const target = document.createElement('div');
    document.body.appendChild(target);
    component = mount(ChatView, { target, props: { conversationId: null } });
    flushSync();
    const composer = target.querySelector<HTMLTextAreaElement>('[data-testid="composer"]')!;
    composer.value = 'Hi';
    composer.dispatchEvent(new Event('input', { bubbles: true }));
    composer.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', shiftKey: true, bubbles: true, cancelable: true }));
    flushSync();
    expect(calls).not.toContain('POST /api/conversations');

    composer.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
    await vi.waitFor(() => expect(target.querySelector('[data-testid="stop"]')).not.toBeNull());
    expect(calls).toContain('POST /api/conversations/7/messages');
    await vi.waitFor(() => expect(target.querySelector('[data-testid="context-meter"]')?.textContent).toContain('/ 2,048 tokens'));
    expect(target.querySelector('[data-testid="message-user"] [data-testid="message-content"]')?.textContent).toBe('Hi');

    window.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true, cancelable: true }));
    await vi.waitFor(() => expect(streamAborted).toBe(true));
    await vi.waitFor(() => expect(chat.streaming).toBe(false), { timeout: 5000 });
    flushSync();
    expect(target.querySelector('[data-testid="stop"]')).toBeNull();
    const answer = target.querySelector('[data-testid="message-assistant"]');
    expect(answer?.querySelector('[data-testid="message-content"]')?.textContent?.trim()).toBe('Once upon');
    expect(answer?.textContent).toContain('Stopped');
  });
});
