// Markdown → sanitised HTML, with highlighted code blocks (copy button) and KaTeX math.
import { Marked, type Tokens, type TokenizerAndRendererExtension } from 'marked';
import { sanitize } from './sanitize';

type Katex = typeof import('katex').default;
type Highlighter = typeof import('highlight.js').default;

// KaTeX and highlight.js are loaded the first time an answer needs them, not at start-up.
// Until then a formula shows as its source and code as plain text; once loaded, every
// Markdown view renders again (see onRenderersLoaded).
let katex: Katex | null = null;
let hljs: Highlighter | null = null;
const listeners = new Set<() => void>();

/** Calls `fn` each time a renderer has loaded; returns the unsubscribe function. */
export function onRenderersLoaded(fn: () => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function rendererLoaded() {
  cache.clear();
  for (const fn of listeners) fn();
}

/** A loader that imports once, hands the module to `use`, and re-renders the views. */
function loader<M>(load: () => Promise<M>, use: (m: M) => void, failed: string): () => Promise<void> {
  let pending: Promise<void> | null = null;
  return () =>
    (pending ??= load().then(
      (m) => {
        use(m);
        rendererLoaded();
      },
      (e) => console.error(failed, e),
    ));
}

export const loadKatex = loader(
  () => import('./katex'),
  (m) => (katex = m.default),
  'KaTeX could not load; formulas stay as source',
);

export const loadHighlighter = loader(
  () => import('./highlighter'),
  (m) => (hljs = m.default),
  'highlight.js could not load; code stays plain',
);

export function escapeHtml(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

// Small caches: while streaming, earlier formulas and code blocks are re-rendered every frame.
const cache = new Map<string, string>();
function cached(key: string, make: () => string): string {
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const v = make();
  if (cache.size > 500) cache.clear();
  cache.set(key, v);
  return v;
}

/** KaTeX's cap on user-given sizes, in ems. */
export const KATEX_MAX_SIZE = 20;

function renderMath(tex: string, display: boolean): string {
  const k = katex;
  if (!k) {
    void loadKatex();
    return `<code class="math-source">${escapeHtml(tex)}</code>`;
  }
  return cached(`${display ? 'D' : 'I'}${tex}`, () => {
    try {
      return k.renderToString(tex, {
        displayMode: display,
        throwOnError: false,
        output: 'htmlAndMathml',
        trust: false,
        strict: 'ignore',
        maxExpand: 500,
        // Any size a formula names (\rule, \kern, \raisebox…) is capped, in ems: a
        // model's \rule{300em}{300em} must not paint the window (app.css clips `.md` too).
        maxSize: KATEX_MAX_SIZE,
      });
    } catch {
      return `<code class="math-error">${escapeHtml(tex)}</code>`;
    }
  });
}

function highlight(code: string, lang: string): string {
  const h = hljs;
  if (!h) {
    if (lang) void loadHighlighter();
    return escapeHtml(code);
  }
  const language = h.getLanguage(lang) ? lang : '';
  if (!language) return escapeHtml(code);
  return cached(`H${language}\u0000${code}`, () => {
    try {
      return h.highlight(code, { language, ignoreIllegals: true }).value;
    } catch {
      return escapeHtml(code);
    }
  });
}

interface MathToken extends Tokens.Generic {
  type: 'mathBlock' | 'mathInline';
  text: string;
}

const mathBlock: TokenizerAndRendererExtension = {
  name: 'mathBlock',
  level: 'block',
  start(src) {
    const m = src.match(/\$\$|\\\[/);
    return m?.index;
  },
  tokenizer(src) {
    const m = /^\$\$([\s\S]+?)\$\$[^\S\n]*(?:\n|$)/.exec(src) ?? /^\\\[([\s\S]+?)\\\][^\S\n]*(?:\n|$)/.exec(src);
    if (m) return { type: 'mathBlock', raw: m[0], text: m[1].trim() } as MathToken;
    return undefined;
  },
  renderer(token) {
    return `<div class="math-display">${renderMath((token as MathToken).text, true)}</div>`;
  },
};

const mathInline: TokenizerAndRendererExtension = {
  name: 'mathInline',
  level: 'inline',
  start(src) {
    const m = src.match(/\$|\\\(|\\\[/);
    return m?.index;
  },
  tokenizer(src) {
    let m = /^\$\$([\s\S]+?)\$\$/.exec(src);
    if (m) return { type: 'mathInline', raw: m[0], text: m[1].trim(), display: true } as MathToken;
    m = /^\\\[([\s\S]+?)\\\]/.exec(src);
    if (m) return { type: 'mathInline', raw: m[0], text: m[1].trim(), display: true } as MathToken;
    m = /^\\\(([\s\S]+?)\\\)/.exec(src);
    if (m) return { type: 'mathInline', raw: m[0], text: m[1].trim() } as MathToken;
    // $…$: no space just inside the dollars and no digit right after the closing one,
    // so "$5 and $10" stays text.
    m = /^\$(?!\s)((?:\\.|[^\\$\n])+?)(?<!\s)\$(?!\d)/.exec(src);
    if (m) return { type: 'mathInline', raw: m[0], text: m[1] } as MathToken;
    return undefined;
  },
  renderer(token) {
    const t = token as MathToken & { display?: boolean };
    return renderMath(t.text, !!t.display);
  },
};

const md = new Marked({
  gfm: true,
  breaks: false,
  async: false,
  extensions: [mathBlock, mathInline],
  renderer: {
    code({ text, lang }: Tokens.Code) {
      const language = (lang ?? '').trim().split(/\s+/)[0].toLowerCase();
      const label = language || 'text';
      return (
        `<div class="code-block"><div class="code-head"><span class="code-lang">${escapeHtml(label)}</span>` +
        `<button type="button" class="code-copy" data-copy-code aria-label="Copy code">Copy</button></div>` +
        `<pre><code class="hljs${language ? ` language-${escapeHtml(language)}` : ''}">${highlight(text, language)}</code></pre></div>`
      );
    },
    // Raw HTML from the model is shown as text, never interpreted.
    html({ text }: Tokens.HTML | Tokens.Tag) {
      return escapeHtml(text);
    },
  },
});

/** Markdown (untrusted) → safe HTML. */
export function renderMarkdown(src: string): string {
  let html: string;
  try {
    html = md.parse(src) as string;
  } catch {
    html = `<p>${escapeHtml(src)}</p>`;
  }
  return sanitize(html);
}
