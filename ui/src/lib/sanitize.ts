// Model output is untrusted. Everything that reaches {@html} passes through here.
import DOMPurify, { type DOMPurify as Purifier } from 'dompurify';

let purifier: Purifier | null = null;

const SAFE_LINK = /^(https?:|mailto:)/i;

function instance(): Purifier {
  if (purifier) return purifier;
  const p = DOMPurify(window);
  p.addHook('uponSanitizeAttribute', (node, data) => {
    // Inline style only inside KaTeX output (it positions glyphs); nowhere else, so model
    // HTML cannot overlay the UI.
    if (data.attrName === 'style') {
      const el = node as Element;
      const inMath = typeof el.closest === 'function' && el.closest('.katex') !== null;
      if (!inMath) data.keepAttr = false;
    }
  });
  p.addHook('afterSanitizeAttributes', (node) => {
    const el = node as Element;
    if (el.tagName === 'A') {
      // Links never navigate the app's webview: the URL is kept for display and copy only.
      const href = el.getAttribute('href') ?? '';
      el.removeAttribute('href');
      el.removeAttribute('target');
      if (SAFE_LINK.test(href.trim())) {
        el.setAttribute('data-href', href.trim());
        el.setAttribute('title', `${href.trim()} — click to copy the link`);
      }
      el.setAttribute('rel', 'noopener noreferrer nofollow');
      el.classList.add('md-link');
    }
    if (el.tagName === 'IMG') {
      // Only embedded images; nothing is fetched from anywhere.
      const src = el.getAttribute('src') ?? '';
      if (!/^data:image\/(png|jpe?g|gif|webp);/i.test(src)) el.removeAttribute('src');
    }
  });
  purifier = p;
  return p;
}

export function sanitize(html: string): string {
  return instance().sanitize(html, {
    USE_PROFILES: { html: true, svg: true, mathMl: true },
    FORBID_TAGS: [
      'script', 'style', 'iframe', 'frame', 'frameset', 'object', 'embed', 'form', 'input',
      'textarea', 'select', 'option', 'link', 'meta', 'base', 'foreignObject', 'use',
      'animate', 'set', 'audio', 'video', 'source', 'track', 'dialog', 'template',
    ],
    FORBID_ATTR: ['action', 'formaction', 'xlink:href', 'srcset', 'ping', 'autofocus'],
    ADD_TAGS: ['semantics', 'annotation'],
    ADD_ATTR: ['encoding'],
    ALLOW_DATA_ATTR: true,
    ALLOW_UNKNOWN_PROTOCOLS: false,
  }) as string;
}
