import { afterEach, describe, expect, it, vi } from 'vitest';
import { flushSync, mount, tick, unmount } from 'svelte';
import AboutSection from './AboutSection.svelte';

const about = {
  version: '0.1.0',
  commit: '2804d6c0abc3',
  llama_cpp: { llama_cpp_sys_2: '0.1.161', ggml: '0.26.0' },
  licenses_url: '/api/about/licenses',
};

async function settle() {
  for (let i = 0; i < 5; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 0));
    await tick();
  }
  flushSync();
}

describe('AboutSection', () => {
  let component: ReturnType<typeof mount> | null = null;

  afterEach(() => {
    if (component) unmount(component);
    component = null;
    vi.unstubAllGlobals();
  });

  it('shows the version, commit and llama.cpp, and the licences from the server on request', async () => {
    const asked: string[] = [];
    vi.stubGlobal('fetch', async (input: RequestInfo | URL) => {
      const url = String(input);
      asked.push(url);
      if (url.endsWith('/api/about')) {
        return new Response(JSON.stringify(about), { headers: { 'Content-Type': 'application/json' } });
      }
      return new Response('Third-party software\n\naxum 0.8.4: MIT\n', { headers: { 'Content-Type': 'text/plain' } });
    });
    component = mount(AboutSection, { target: document.body });
    await settle();
    expect(document.querySelector('[data-testid="about-hearth"]')?.textContent).toBe('0.1.0');
    expect(document.querySelector('[data-testid="about-commit"]')?.textContent).toBe('2804d6c0abc3');
    expect(document.querySelector('[data-testid="about-llamacpp"]')?.textContent).toContain('ggml 0.26.0');
    expect(document.querySelector('[data-testid="licenses"]')).toBeNull();

    (document.querySelector('[data-testid="show-licenses"]') as HTMLButtonElement).click();
    await settle();
    expect(document.querySelector('[data-testid="licenses"]')?.textContent).toContain('axum 0.8.4: MIT');
    expect(asked.some((url) => url.endsWith('/api/about/licenses'))).toBe(true);
  });
});
