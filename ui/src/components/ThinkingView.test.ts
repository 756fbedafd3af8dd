import { afterEach, describe, expect, it } from 'vitest';
import { flushSync, mount, unmount } from 'svelte';
import ThinkingView from './ThinkingView.svelte';

describe('ThinkingView', () => {
  let component: ReturnType<typeof mount> | null = null;

  afterEach(() => {
    if (component) unmount(component);
    component = null;
    document.body.innerHTML = '';
  });

  function show(props: { text: string; tokens?: number; ms?: number; since?: number | null }): HTMLElement {
    const target = document.createElement('div');
    document.body.appendChild(target);
    component = mount(ThinkingView, { target, props });
    flushSync();
    return target;
  }

  it('is collapsed to its time and token count, and opens to the thinking as plain text', () => {
    const target = show({ text: 'Is <b>4</b> right?', tokens: 184, ms: 3200 });
    const details = target.querySelector<HTMLDetailsElement>('[data-testid="thinking"]')!;
    expect(details.open).toBe(false);
    expect(target.querySelector('[data-testid="thinking-summary"]')?.textContent).toBe('Thought for 3.2 s · 184 tokens');
    const text = target.querySelector('[data-testid="thinking-text"]')!;
    expect(text.textContent).toBe('Is <b>4</b> right?');
    expect(text.querySelector('b')).toBeNull();
  });

  it('counts on while the model thinks', () => {
    const target = show({ text: 'Hmm', tokens: 3, since: Date.now() - 2000 });
    expect(target.querySelector('[data-testid="thinking-summary"]')?.textContent).toMatch(/^Thinking… 2\.\d s · 3 tokens$/);
  });
});
