import { afterEach, describe, expect, it, vi } from 'vitest';
import { app } from './app.svelte';

function json(body: unknown): Response {
  return new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } });
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('settings and the theme', () => {
  it("keeps a theme picked while the server's settings are on their way", async () => {
    let answer: (response: Response) => void = () => {};
    vi.stubGlobal('fetch', () => new Promise<Response>((resolve) => (answer = resolve)));
    app.setTheme('light');
    const refreshing = app.refreshSettings();
    app.chooseTheme('dark');
    answer(json({ theme: 'light', default_model: null, api_port: 4327, api_key_set: false, data_dir: '/d' }));
    await refreshing;
    expect(app.theme).toBe('dark');
    expect(app.settings?.theme).toBe('dark');
  });

  it("applies the server's theme when the user picked none meanwhile", async () => {
    vi.stubGlobal('fetch', async () =>
      json({ theme: 'dark', default_model: null, api_port: 4327, api_key_set: false, data_dir: '/d' }),
    );
    app.setTheme('light');
    await app.refreshSettings();
    expect(app.theme).toBe('dark');
  });
});
