/**
 * Model output → safe HTML.
 *
 * A model answer is untrusted text. It is parsed as markdown (marked) with a renderer that
 * turns raw HTML into visible text, keeps only http(s)/mailto links, never emits a remote
 * image, and highlights code blocks (highlight.js core with a few common languages). The
 * result then goes through DOMPurify with an allow-list of tags and attributes and a hook
 * that drops anything that could run code or fetch a remote resource. Both layers are
 * needed: the renderer decides what markdown means, DOMPurify guarantees what reaches the DOM.
 */

import DOMPurify from 'dompurify';
import { Marked, type RendererObject, type Tokens } from 'marked';
import hljs from 'highlight.js/lib/core';
import bash from 'highlight.js/lib/languages/bash';
import c from 'highlight.js/lib/languages/c';
import cpp from 'highlight.js/lib/languages/cpp';
import css from 'highlight.js/lib/languages/css';
import diff from 'highlight.js/lib/languages/diff';
import go from 'highlight.js/lib/languages/go';
import java from 'highlight.js/lib/languages/java';
import javascript from 'highlight.js/lib/languages/javascript';
import json from 'highlight.js/lib/languages/json';
import markdownLanguage from 'highlight.js/lib/languages/markdown';
import python from 'highlight.js/lib/languages/python';
import rust from 'highlight.js/lib/languages/rust';
import shell from 'highlight.js/lib/languages/shell';
import sql from 'highlight.js/lib/languages/sql';
import typescript from 'highlight.js/lib/languages/typescript';
import xml from 'highlight.js/lib/languages/xml';
import yaml from 'highlight.js/lib/languages/yaml';

hljs.registerLanguage('bash', bash);
hljs.registerLanguage('c', c);
hljs.registerLanguage('cpp', cpp);
hljs.registerLanguage('css', css);
hljs.registerLanguage('diff', diff);
hljs.registerLanguage('go', go);
hljs.registerLanguage('java', java);
hljs.registerLanguage('javascript', javascript);
hljs.registerLanguage('json', json);
hljs.registerLanguage('markdown', markdownLanguage);
hljs.registerLanguage('python', python);
hljs.registerLanguage('rust', rust);
hljs.registerLanguage('shell', shell);
hljs.registerLanguage('sql', sql);
hljs.registerLanguage('typescript', typescript);
hljs.registerLanguage('xml', xml);
hljs.registerLanguage('yaml', yaml);

/** Links a model may write: web pages and mail, opened only by a user's click. */
const SAFE_LINK = /^(?:https?:\/\/|mailto:)/i;
/** Images a model may show: inline raster data only (never SVG, never a remote URL). */
const SAFE_IMAGE = /^data:image\/(?:png|jpe?g|gif|webp);base64,[a-z0-9+/=\s]+$/i;

const ALLOWED_TAGS = [
  'a', 'blockquote', 'br', 'button', 'code', 'del', 'div', 'em', 'h1', 'h2', 'h3', 'h4', 'h5',
  'h6', 'hr', 'img', 'input', 'li', 'ol', 'p', 'pre', 's', 'span', 'strong', 'sub', 'sup',
  'table', 'tbody', 'td', 'th', 'thead', 'tr', 'ul',
];
const ALLOWED_ATTR = [
  'alt', 'align', 'aria-label', 'checked', 'class', 'data-testid', 'data-copy-code', 'data-lang', 'disabled',
  'href', 'rel', 'src', 'start', 'target', 'title', 'type',
];

export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** The highlight.js language for a fence's info string, when one of ours knows it. */
export function codeLanguage(info: string | undefined): string | null {
  const name = (info ?? '').trim().split(/\s+/)[0]?.toLowerCase() ?? '';
  if (!name) return null;
  const aliases: Record<string, string> = {
    sh: 'bash', zsh: 'bash', console: 'shell', js: 'javascript', jsx: 'javascript',
    mjs: 'javascript', ts: 'typescript', tsx: 'typescript', py: 'python', rs: 'rust',
    'c++': 'cpp', h: 'c', hpp: 'cpp', golang: 'go', yml: 'yaml', html: 'xml', svg: 'xml',
    md: 'markdown', patch: 'diff', jsonc: 'json',
  };
  const resolved = aliases[name] ?? name;
  return hljs.getLanguage(resolved) ? resolved : null;
}

function codeBlock(text: string, info: string | undefined): string {
  const language = codeLanguage(info);
  const label = (info ?? '').trim().split(/\s+/)[0] ?? '';
  let body: string;
  if (language) {
    try {
      body = hljs.highlight(text, { language, ignoreIllegals: true }).value;
    } catch {
      body = escapeHtml(text);
    }
  } else {
    body = escapeHtml(text);
  }
  const languageClass = language ? ` language-${language}` : '';
  return (
    `<div class="code-block">` +
    // The label is drawn by CSS from data-lang, so the block's text is only its code.
    `<div class="code-head"><span class="code-lang" data-lang="${escapeHtml(label || 'text')}"></span>` +
    `<button type="button" class="copy-code" data-copy-code="" data-testid="copy-code" aria-label="Copy code">Copy</button></div>` +
    `<pre><code class="hljs${languageClass}">${body}</code></pre></div>`
  );
}

const safeRenderer: RendererObject = {
  code({ text, lang }: Tokens.Code): string {
    return codeBlock(text, lang);
  },

  /** Raw HTML in an answer is shown as the text it is. */
  html({ text }: Tokens.HTML | Tokens.Tag): string {
    return escapeHtml(text);
  },

  link(token: Tokens.Link): string {
    const inner = this.parser.parseInline(token.tokens);
    const href = token.href.trim();
    if (!SAFE_LINK.test(href)) return `<span class="unsafe-link">${inner}</span>`;
    const title = token.title ? ` title="${escapeHtml(token.title)}"` : '';
    return `<a href="${escapeHtml(href)}"${title} target="_blank" rel="noopener noreferrer nofollow">${inner}</a>`;
  },

  image({ href, text }: Tokens.Image): string {
    const source = href.trim();
    if (SAFE_IMAGE.test(source)) {
      return `<img src="${escapeHtml(source)}" alt="${escapeHtml(text)}">`;
    }
    // A remote image would tell a server this conversation happened: show its description
    // (CSS marks it as an image that was not loaded).
    return `<span class="blocked-image" title="${escapeHtml(`Image not loaded: ${source}`)}">${escapeHtml(text)}</span>`;
  },
};

const marked = new Marked({ gfm: true, breaks: false, async: false });
marked.use({ renderer: safeRenderer });

let hooksInstalled = false;

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  DOMPurify.addHook('uponSanitizeAttribute', (_node, data) => {
    // No event handler or inline style ever survives, whatever the allow-list says.
    if (/^on/i.test(data.attrName) || data.attrName.toLowerCase() === 'style') {
      data.keepAttr = false;
    }
  });
  DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    const element = node as Element;
    const tag = element.tagName?.toLowerCase();
    if (tag === 'a') {
      const href = element.getAttribute('href') ?? '';
      if (!SAFE_LINK.test(href.trim())) {
        element.removeAttribute('href');
      } else {
        element.setAttribute('target', '_blank');
        element.setAttribute('rel', 'noopener noreferrer nofollow');
      }
    } else if (tag === 'img') {
      const src = element.getAttribute('src') ?? '';
      if (!SAFE_IMAGE.test(src.trim())) element.removeAttribute('src');
      element.removeAttribute('srcset');
    } else if (tag === 'input') {
      // Only GFM task-list boxes, shown read-only.
      if (element.getAttribute('type') !== 'checkbox') element.setAttribute('type', 'checkbox');
      element.setAttribute('disabled', '');
    } else if (tag === 'button') {
      element.setAttribute('type', 'button');
    }
  });
}

/** Sanitizes HTML with the allow-list the chat uses. */
export function sanitizeHtml(html: string): string {
  installHooks();
  return DOMPurify.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    // DOMPurify's default URI check stays (it blocks javascript: and friends); the hook above
    // narrows links to http(s)/mailto and images to inline raster data.
    FORBID_TAGS: ['script', 'style', 'iframe', 'object', 'embed', 'form', 'link', 'meta', 'base', 'svg', 'math'],
    FORBID_ATTR: ['style', 'srcset', 'action', 'formaction', 'xlink:href', 'background', 'poster'],
    KEEP_CONTENT: true,
    RETURN_TRUSTED_TYPE: false,
  }) as string;
}

/** Markdown (a model's answer, complete or still streaming) → sanitized HTML. */
export function renderMarkdown(text: string): string {
  const html = marked.parse(text, { async: false }) as string;
  return sanitizeHtml(html);
}
