import { afterEach, describe, expect, it, vi } from 'vitest';
import { flushSync, mount, unmount } from 'svelte';
import Markdown from './Markdown.svelte';

describe('Markdown component', () => {
  let component: ReturnType<typeof mount> | null = null;
  afterEach(() => {
    if (component) unmount(component);
    component = null;
    document.body.innerHTML = '';
    vi.unstubAllGlobals();
  });

  it('renders sanitized markdown and copies a code block with its button', async () => {
    const writeText = vi.fn(async () => {});
    vi.stubGlobal('navigator', { ...navigator, clipboard: { writeText } });
    const target = document.createElement('div');
    document.body.appendChild(target);
    component = mount(Markdown, {
      target,
      props: { text: 'Run <script>alert(1)</script>:\n\n```bash\necho hi\n```' },
    });
    flushSync();
    const content = target.querySelector('[data-testid="message-content"]')!;
    expect(content.querySelector('script')).toBeNull();
    expect(content.textContent).toContain('<script>alert(1)</script>');
    const button = content.querySelector<HTMLButtonElement>('[data-testid="copy-code"]')!;
    button.click();
    await vi.waitFor(() => expect(writeText).toHaveBeenCalledWith('echo hi'));
    await vi.waitFor(() => expect(button.textContent).toBe('Copied'));
  });
});
