import { describe, expect, it } from 'vitest';
import { renderMarkdown, sanitizeHtml } from './markdown';

function dom(html: string): HTMLElement {
  const container = document.createElement('div');
  container.innerHTML = html;
  return container;
}

describe('renderMarkdown', () => {
  it('shows a <script> tag as text and emits no script element', () => {
    const html = renderMarkdown('Hello <script>window.pwned = 1</script> world');
    const root = dom(html);
    expect(root.querySelector('script')).toBeNull();
    expect(root.textContent).toContain('<script>window.pwned = 1</script>');
  });

  it('shows an <img onerror> as text with no element and no handler', () => {
    const html = renderMarkdown('<img src=x onerror="window.pwned=1">');
    const root = dom(html);
    expect(root.querySelector('img')).toBeNull();
    expect(html).not.toMatch(/<img/i);
    expect(root.textContent).toContain('<img src=x onerror="window.pwned=1">');
    for (const element of root.querySelectorAll('*')) {
      for (const attribute of element.attributes) expect(attribute.name).not.toMatch(/^on/i);
    }
  });

  it('neutralizes javascript: and data: links', () => {
    const root = dom(renderMarkdown('[click](javascript:alert(1)) and [data](data:text/html,<b>x</b>)'));
    for (const link of root.querySelectorAll('a')) {
      expect(link.getAttribute('href') ?? '').not.toMatch(/^(javascript|data):/i);
    }
    expect(root.textContent).toContain('click');
    expect(root.innerHTML).not.toMatch(/javascript:/i);
  });

  it('keeps https links, opening in a new context without referrer', () => {
    const link = dom(renderMarkdown('[docs](https://example.org/a)')).querySelector('a');
    expect(link?.getAttribute('href')).toBe('https://example.org/a');
    expect(link?.getAttribute('rel')).toContain('noopener');
    expect(link?.getAttribute('rel')).toContain('noreferrer');
  });

  it('never loads a remote image', () => {
    const root = dom(renderMarkdown('![tracker](https://evil.example/pixel.png) ![x](//evil.example/y.png)'));
    expect(root.querySelector('img')).toBeNull();
    expect(root.querySelector('.blocked-image')?.textContent).toBe('tracker');
  });

  it('keeps an inline raster data image', () => {
    const root = dom(renderMarkdown('![dot](data:image/png;base64,iVBORw0KGgo=)'));
    expect(root.querySelector('img')?.getAttribute('src')).toBe('data:image/png;base64,iVBORw0KGgo=');
  });

  it('highlights code blocks and gives each a copy button', () => {
    const html = renderMarkdown('```python\ndef f(x):\n    return x + 1\n```\n\n```\nplain <b>text</b>\n```');
    const root = dom(html);
    const blocks = root.querySelectorAll('.code-block');
    expect(blocks).toHaveLength(2);
    expect(root.querySelectorAll('[data-testid="copy-code"]')).toHaveLength(2);
    const python = blocks[0]!.querySelector('code');
    expect(python?.className).toContain('language-python');
    expect(python?.querySelector('.hljs-keyword')?.textContent).toBe('def');
    expect(python?.textContent).toBe('def f(x):\n    return x + 1');
    expect(blocks[0]!.querySelector('.code-lang')?.getAttribute('data-lang')).toBe('python');
    expect(blocks[0]!.querySelector('.code-head')?.textContent).toBe('Copy');
    expect(blocks[1]!.querySelector('b')).toBeNull();
    expect(blocks[1]!.textContent).toContain('plain <b>text</b>');
  });

  it('renders an unfinished fence while an answer streams', () => {
    const root = dom(renderMarkdown('Here:\n```js\nconst a = 1;'));
    expect(root.querySelector('code')?.textContent).toContain('const a = 1;');
  });

  it('renders ordinary markdown', () => {
    const root = dom(renderMarkdown('# Title\n\n**bold** and *it*\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |'));
    expect(root.querySelector('h1')?.textContent).toBe('Title');
    expect(root.querySelector('strong')?.textContent).toBe('bold');
    expect(root.querySelectorAll('li')).toHaveLength(2);
    expect(root.querySelector('table td')?.textContent).toBe('1');
  });
});

describe('sanitizeHtml', () => {
  it('strips scripts, handlers, styles, iframes and remote images from raw HTML', () => {
    const html = sanitizeHtml(
      '<p onclick="x()" style="background:url(https://e.example/a)">hi</p>' +
        '<script>alert(1)</script><iframe src="https://e.example"></iframe>' +
        '<img src="https://e.example/p.png" onerror="alert(1)"><a href="javascript:alert(1)">a</a>' +
        '<svg><image href="https://e.example/i.png"/></svg><form action="https://e.example"><input type="text"></form>',
    );
    expect(html).not.toMatch(/script|onclick|onerror|iframe|style=|https:\/\/e\.example|javascript:|<svg|<form/i);
    expect(dom(html).querySelector('p')?.textContent).toBe('hi');
  });
});
