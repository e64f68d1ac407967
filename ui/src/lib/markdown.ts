// Markdown → sanitised HTML, with highlighted code blocks (copy button) and KaTeX math.
import { Marked, type Tokens, type TokenizerAndRendererExtension } from 'marked';
import katex from 'katex';
import hljs from 'highlight.js/lib/core';
import bash from 'highlight.js/lib/languages/bash';
import c from 'highlight.js/lib/languages/c';
import cpp from 'highlight.js/lib/languages/cpp';
import csharp from 'highlight.js/lib/languages/csharp';
import css from 'highlight.js/lib/languages/css';
import diff from 'highlight.js/lib/languages/diff';
import go from 'highlight.js/lib/languages/go';
import java from 'highlight.js/lib/languages/java';
import javascript from 'highlight.js/lib/languages/javascript';
import json from 'highlight.js/lib/languages/json';
import kotlin from 'highlight.js/lib/languages/kotlin';
import lua from 'highlight.js/lib/languages/lua';
import markdown from 'highlight.js/lib/languages/markdown';
import php from 'highlight.js/lib/languages/php';
import python from 'highlight.js/lib/languages/python';
import ruby from 'highlight.js/lib/languages/ruby';
import rust from 'highlight.js/lib/languages/rust';
import shell from 'highlight.js/lib/languages/shell';
import sql from 'highlight.js/lib/languages/sql';
import swift from 'highlight.js/lib/languages/swift';
import typescript from 'highlight.js/lib/languages/typescript';
import xml from 'highlight.js/lib/languages/xml';
import yaml from 'highlight.js/lib/languages/yaml';
import ini from 'highlight.js/lib/languages/ini';
import { sanitize } from './sanitize';

const langs = {
  bash, c, cpp, csharp, css, diff, go, java, javascript, json, kotlin, lua, markdown, php,
  python, ruby, rust, shell, sql, swift, typescript, xml, yaml, ini,
};
for (const [name, def] of Object.entries(langs)) hljs.registerLanguage(name, def);
hljs.registerAliases(['sh', 'zsh', 'console'], { languageName: 'bash' });
hljs.registerAliases(['html', 'svg'], { languageName: 'xml' });
hljs.registerAliases(['toml'], { languageName: 'ini' });

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

function renderMath(tex: string, display: boolean): string {
  return cached(`${display ? 'D' : 'I'}${tex}`, () => {
    try {
      return katex.renderToString(tex, {
        displayMode: display,
        throwOnError: false,
        output: 'htmlAndMathml',
        trust: false,
        strict: 'ignore',
        maxExpand: 500,
      });
    } catch {
      return `<code class="math-error">${escapeHtml(tex)}</code>`;
    }
  });
}

function highlight(code: string, lang: string): string {
  const language = hljs.getLanguage(lang) ? lang : '';
  if (!language) return escapeHtml(code);
  return cached(`H${language}\u0000${code}`, () => {
    try {
      return hljs.highlight(code, { language, ignoreIllegals: true }).value;
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
