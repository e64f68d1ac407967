import { beforeAll, describe, expect, it } from 'vitest';
import { loadHighlighter, loadKatex, renderMarkdown } from './markdown';
import { sanitize } from './sanitize';

// What users see once an answer has needed them; markdown.lazy.test.ts covers before.
beforeAll(() => Promise.all([loadKatex(), loadHighlighter()]));

/** Parses the HTML and reports anything that could run script or navigate. */
function dangers(html: string): string[] {
  const doc = new DOMParser().parseFromString(`<div>${html}</div>`, 'text/html');
  const found: string[] = [];
  doc.querySelectorAll('*').forEach((el) => {
    const tag = el.tagName.toLowerCase();
    if (['script', 'iframe', 'object', 'embed', 'style', 'form', 'base', 'meta', 'link'].includes(tag)) found.push(`<${tag}>`);
    for (const a of Array.from(el.attributes)) {
      if (/^on/i.test(a.name)) found.push(`${tag}[${a.name}]`);
      if (/^\s*(javascript|vbscript|data:text\/html)/i.test(a.value) && /href|src|action/i.test(a.name))
        found.push(`${tag}[${a.name}=${a.value}]`);
      if (a.name === 'href' || a.name === 'xlink:href') found.push(`${tag}[${a.name}] navigates`);
    }
  });
  return found;
}

const payloads = [
  '<img src=x onerror=alert(1)>',
  '[x](javascript:alert(1))',
  '<script>alert(1)</script>',
  '<svg onload=alert(1)><circle r="5"/></svg>',
  '<a href="javascript:alert(1)">click</a>',
  '<a href="JaVaScRiPt:alert(1)">click</a>',
  '<iframe src="javascript:alert(1)"></iframe>',
  '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>',
  '<div style="position:fixed;inset:0">overlay</div>',
  '<form action="javascript:alert(1)"><button>go</button></form>',
  '![x](javascript:alert(1))',
  '<details open ontoggle=alert(1)>',
];

describe('sanitiser: XSS payloads become inert', () => {
  for (const p of payloads) {
    it(`markdown: ${p}`, () => {
      const html = renderMarkdown(p);
      expect(dangers(html)).toEqual([]);
      expect(html).not.toMatch(/<script/i);
    });
    it(`raw html: ${p}`, () => {
      expect(dangers(sanitize(p))).toEqual([]);
    });
  }

  it('shows model HTML as text instead of interpreting it', () => {
    const html = renderMarkdown('<img src=x onerror=alert(1)> and <b>bold</b>');
    const div = document.createElement('div');
    div.innerHTML = html;
    expect(div.querySelector('img')).toBeNull();
    expect(div.textContent).toContain('<img src=x onerror=alert(1)>');
  });

  it('raw sanitiser strips handlers and script from SVG and img', () => {
    const div = document.createElement('div');
    div.innerHTML = sanitize('<svg onload="alert(1)"><script>alert(2)</script><a xlink:href="javascript:x"><text>t</text></a></svg><img src="http://evil/x.png" onerror="alert(3)">');
    expect(div.querySelector('script')).toBeNull();
    expect(div.querySelector('svg')?.getAttribute('onload')).toBeNull();
    const img = div.querySelector('img');
    expect(img?.getAttribute('onerror')).toBeNull();
    expect(img?.getAttribute('src')).toBeNull(); // nothing is fetched
  });

  it('keeps style out of model HTML', () => {
    const div = document.createElement('div');
    div.innerHTML = sanitize('<p style="position:fixed">x</p>');
    expect(div.querySelector('p')?.getAttribute('style')).toBeNull();
  });
});

describe('links open nothing inside the app', () => {
  it('safe links keep their address only as data, not href', () => {
    const div = document.createElement('div');
    div.innerHTML = renderMarkdown('see [docs](https://example.com/a?b=1) and <https://x.org>');
    const links = div.querySelectorAll('a');
    expect(links.length).toBe(2);
    links.forEach((a) => {
      expect(a.hasAttribute('href')).toBe(false);
      expect(a.hasAttribute('target')).toBe(false);
      expect(a.classList.contains('md-link')).toBe(true);
    });
    expect((links[0] as HTMLElement).dataset.href).toBe('https://example.com/a?b=1');
  });

  it('javascript: links keep no address at all', () => {
    const div = document.createElement('div');
    div.innerHTML = renderMarkdown('[x](javascript:alert(1))');
    const a = div.querySelector('a');
    if (a) {
      expect(a.getAttribute('href')).toBeNull();
      expect(a.getAttribute('data-href')).toBeNull();
    }
  });
});

describe('markdown features', () => {
  it('renders code blocks highlighted, with a copy button', () => {
    const div = document.createElement('div');
    div.innerHTML = renderMarkdown('```python\ndef f(x):\n    return "<b>"\n```');
    const code = div.querySelector('.code-block pre code');
    expect(code?.classList.contains('language-python')).toBe(true);
    expect(code?.querySelector('.hljs-keyword')?.textContent).toBe('def');
    expect(code?.textContent).toContain('return "<b>"');
    expect(div.querySelector('button[data-copy-code]')?.getAttribute('aria-label')).toBe('Copy code');
    expect(div.querySelector('.code-lang')?.textContent).toBe('python');
  });

  it('renders all four math delimiters with KaTeX and leaves prices alone', () => {
    for (const src of ['$x^2$', '$$x^2$$', '\\(x^2\\)', '\\[x^2\\]']) {
      const div = document.createElement('div');
      div.innerHTML = renderMarkdown(src);
      expect(div.querySelector('.katex'), src).not.toBeNull();
      expect(div.querySelector('annotation')?.textContent, src).toBe('x^2');
    }
    const div = document.createElement('div');
    div.innerHTML = renderMarkdown('It costs $5 and $10.');
    expect(div.querySelector('.katex')).toBeNull();
    expect(div.textContent).toContain('$5 and $10');
  });

  it('does not treat $ inside code as math', () => {
    const div = document.createElement('div');
    div.innerHTML = renderMarkdown('`echo $HOME $PATH`');
    expect(div.querySelector('.katex')).toBeNull();
    expect(div.querySelector('code')?.textContent).toBe('echo $HOME $PATH');
  });

  it('renders an unfinished code fence while streaming', () => {
    const div = document.createElement('div');
    div.innerHTML = renderMarkdown('Here:\n\n```js\nconst a = 1;');
    expect(div.querySelector('pre code')?.textContent).toContain('const a = 1;');
  });

  it('renders tables, lists and emphasis', () => {
    const div = document.createElement('div');
    div.innerHTML = renderMarkdown('| a | b |\n|---|---|\n| 1 | 2 |\n\n- **x**\n- *y*');
    expect(div.querySelectorAll('td')).toHaveLength(2);
    expect(div.querySelector('li strong')?.textContent).toBe('x');
  });
});
