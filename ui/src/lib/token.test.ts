import { afterEach, describe, expect, it, vi } from 'vitest';
import { ACCESS_KEY_STORAGE, ApiClient, adoptUrlToken, hasStoredToken } from './api';
import { app } from './app.svelte';

afterEach(() => {
  sessionStorage.clear();
  window.history.replaceState(null, '', '/');
  delete window.__HEARTH__;
  vi.unstubAllGlobals();
});

describe("hearth serve's access token", () => {
  it('is taken from the URL once, kept for the tab and removed from the address bar', () => {
    window.history.replaceState({ kept: 1 }, '', '/chat/3?token=abc123&x=1#end');
    expect(adoptUrlToken()).toBe('abc123');
    expect(sessionStorage.getItem(ACCESS_KEY_STORAGE)).toBe('abc123');
    expect(window.location.pathname).toBe('/chat/3');
    expect(window.location.search).toBe('?x=1');
    expect(window.location.hash).toBe('#end');
    expect(window.location.href).not.toContain('abc123');
    expect(window.history.state).toEqual({ kept: 1 });
    // A second look finds nothing more in the URL, and the kept token stays.
    expect(adoptUrlToken()).toBeNull();
    expect(sessionStorage.getItem(ACCESS_KEY_STORAGE)).toBe('abc123');
    expect(hasStoredToken()).toBe(true);
  });

  it('leaves a URL without a token alone, and an empty token is dropped from it', () => {
    window.history.replaceState(null, '', '/settings?x=1');
    expect(adoptUrlToken()).toBeNull();
    expect(window.location.search).toBe('?x=1');
    expect(hasStoredToken()).toBe(false);
    window.history.replaceState(null, '', '/?token=');
    expect(adoptUrlToken()).toBeNull();
    expect(window.location.search).toBe('');
    expect(hasStoredToken()).toBe(false);
  });

  it('is sent as the bearer token on every API call', async () => {
    window.history.replaceState(null, '', '/?token=tok-1');
    adoptUrlToken();
    const seen: (string | null)[] = [];
    const fetchImpl = (async (_input: RequestInfo | URL, init?: RequestInit) => {
      seen.push(new Headers(init?.headers).get('Authorization'));
      return new Response('[]', { status: 200, headers: { 'Content-Type': 'application/json' } });
    }) as typeof fetch;
    const client = new ApiClient({ base: '', fetch: fetchImpl });
    await client.listConversations();
    await client.health();
    expect(seen).toEqual(['Bearer tok-1', 'Bearer tok-1']);
  });

  it("gives way to the desktop shell's token", async () => {
    sessionStorage.setItem(ACCESS_KEY_STORAGE, 'from-tab');
    window.__HEARTH__ = { token: 'from-shell' };
    const seen: (string | null)[] = [];
    const fetchImpl = (async (_input: RequestInfo | URL, init?: RequestInit) => {
      seen.push(new Headers(init?.headers).get('Authorization'));
      return new Response('{"status":"ok"}', { status: 200, headers: { 'Content-Type': 'application/json' } });
    }) as typeof fetch;
    await new ApiClient({ base: '', fetch: fetchImpl }).health();
    expect(seen).toEqual(['Bearer from-shell']);
    expect(app.needsToken).toBe(false);
  });

  it('makes the page ask for it when the tab has none, and stop asking once given', async () => {
    vi.stubGlobal('fetch', async () => new Response('{"status":"ok"}', { status: 200 }));
    await app.start();
    expect(app.needsToken).toBe(true);
    app.setAccessKey('typed-token');
    expect(sessionStorage.getItem(ACCESS_KEY_STORAGE)).toBe('typed-token');
    expect(app.needsToken).toBe(false);
    app.connection = 'unauthorized';
    expect(app.needsToken).toBe(true);
  });
});
