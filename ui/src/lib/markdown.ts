// Markdown → sanitised HTML, with highlighted code blocks (copy button) and KaTeX math.
import { Lexer, Marked, type Links, type Tokens, type TokenizerAndRendererExtension } from 'marked';
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

/** Markdown (untrusted) → safe HTML, through the same path as the streaming view. */
export function renderMarkdown(src: string): string {
  const view = new StreamingMarkdown().update(src);
  return view.blocks.map((b) => b.html).join('') + view.tail;
}

/** One finished top-level block of a streamed text: rendered once, its DOM never touched again. */
export interface MdBlock {
  key: number;
  html: string;
}

export interface MdView {
  blocks: readonly MdBlock[];
  /** The block still being written (and anything after it), rendered again on each update. */
  tail: string;
}

function renderTokens(tokens: Tokens.Generic[], links: Links | undefined): string {
  // The parser resolves reference links from the list's `links`, as marked's own lexer sets it.
  const list = Object.assign(tokens.slice(), { links: links ?? {} });
  try {
    return sanitize(md.parser(list as Parameters<typeof md.parser>[0]) as string);
  } catch {
    return `<p>${escapeHtml(tokens.map((t) => t.raw).join(''))}</p>`;
  }
}

/**
 * Markdown for text that grows while it streams. Re-rendering the whole answer on every
 * frame makes each token cost more than the last (parse, sanitise, and a new DOM for
 * everything already on screen). Here only the open tail is lexed and rendered again: a
 * top-level block followed by another one can no longer change, so it is rendered once,
 * and `blocks` keeps its object (and so its DOM, with a keyed each) from then on.
 * Two things reach back: text that does not extend what was seen (an edit, a branch
 * switch) starts over, and a reference-link definition (`[1]: https://…`), which may come
 * after the links that use it, renders the finished blocks again (only those whose HTML
 * changes get a new key).
 */
export class StreamingMarkdown {
  private seen = '';
  private doneLen = 0;
  private done: MdBlock[] = [];
  private doneRaw: string[] = [];
  /** Reference-link definitions found in the finished blocks. */
  private links: Links = {};
  /** The definitions the finished blocks were rendered with. */
  private renderedWith: Links = {};
  private nextKey = 0;

  update(source: string): MdView {
    const src = source.replace(/\r\n?/g, '\n');
    if (!src.startsWith(this.seen.slice(0, this.doneLen))) {
      this.doneLen = 0;
      this.done = [];
      this.doneRaw = [];
      this.links = {};
      this.renderedWith = {};
    }
    this.seen = src;
    const rest = src.slice(this.doneLen);
    let tokens: Tokens.Generic[];
    let links: Links;
    try {
      const list = lexWith(rest, this.links);
      tokens = list as unknown as Tokens.Generic[];
      links = list.links;
    } catch {
      return { blocks: this.done, tail: `<p>${escapeHtml(rest)}</p>` };
    }
    if (!sameLinks(links, this.renderedWith)) {
      this.rerender(links);
      this.renderedWith = links;
    }
    // Offsets come from the tokens' raw text: if it ever does not cover the input exactly,
    // nothing is committed and the text renders whole, as before.
    const exact = tokens.reduce((n, t) => n + t.raw.length, 0) === rest.length;
    let open = tokens.length;
    while (open > 0 && tokens[open - 1].type === 'space') open--;
    open = Math.max(0, open - 1);
    if (exact && open > 0) {
      const fresh: MdBlock[] = [];
      for (const token of tokens.slice(0, open)) {
        this.doneLen += token.raw.length;
        if (token.type === 'space') continue;
        if (token.type === 'def') {
          const def = token as Tokens.Def;
          this.links[def.tag] ??= { href: def.href, title: def.title };
        }
        fresh.push({ key: this.nextKey++, html: renderTokens([token], links) });
        this.doneRaw.push(token.raw);
      }
      this.done = this.done.concat(fresh);
      tokens = tokens.slice(open);
    }
    return { blocks: this.done, tail: renderTokens(tokens, links) };
  }

  private rerender(links: Links): void {
    let changed = false;
    const next = this.done.map((block, i) => {
      // Links are resolved while lexing, so the block is lexed again.
      const html = renderTokens(lexWith(this.doneRaw[i], links) as unknown as Tokens.Generic[], links);
      if (html === block.html) return block;
      changed = true;
      return { key: this.nextKey++, html };
    });
    if (changed) this.done = next;
  }
}

/** Lexes with reference-link definitions already known (the first definition of a label wins). */
function lexWith(src: string, links: Links): ReturnType<typeof md.lexer> {
  const lexer = new Lexer(md.defaults);
  Object.assign(lexer.tokens.links, links);
  return lexer.lex(src);
}

function sameLinks(a: Links, b: Links): boolean {
  const ka = Object.keys(a);
  return (
    ka.length === Object.keys(b).length &&
    ka.every((k) => b[k] !== undefined && a[k].href === b[k].href && a[k].title === b[k].title)
  );
}
