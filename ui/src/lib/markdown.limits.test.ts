// Sizes a model's formula may ask for, and the clip around every rendered answer: an
// answer must not be able to paint over earlier messages or the app's own controls.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { KATEX_MAX_SIZE, loadKatex, renderMarkdown } from './markdown';

beforeAll(() => loadKatex());

/** Every length in ems set in the rendered math's inline styles (not its source text). */
function styleEms(html: string): number[] {
  const div = document.createElement('div');
  div.innerHTML = html;
  return Array.from(div.querySelectorAll('.katex-html [style]')).flatMap((el) =>
    Array.from((el.getAttribute('style') ?? '').matchAll(/(-?\d+(?:\.\d+)?)em/g), (m) => Number(m[1])),
  );
}

describe('KaTeX sizes are capped', () => {
  it('caps \\rule{300em}{300em} to maxSize', () => {
    const html = renderMarkdown('$\\rule{300em}{300em}$');
    const div = document.createElement('div');
    div.innerHTML = html;
    const rule = div.querySelector<HTMLElement>('.katex-html .rule');
    expect(rule).not.toBeNull();
    expect(rule!.style.borderRightWidth).toBe(`${KATEX_MAX_SIZE}em`);
    expect(rule!.style.borderTopWidth).toBe(`${KATEX_MAX_SIZE}em`);
    expect(Math.max(...styleEms(html))).toBeLessThanOrEqual(KATEX_MAX_SIZE);
  });

  it('caps other sizes a formula names', () => {
    for (const tex of ['\\raisebox{400em}{x}', '\\hspace{900em}x', '\\kern{700em}x', '\\rule[300em]{1em}{1em}']) {
      expect(Math.max(0, ...styleEms(renderMarkdown(`$$${tex}$$`))), tex).toBeLessThanOrEqual(KATEX_MAX_SIZE + 1);
    }
  });

  it('leaves ordinary sizes alone', () => {
    const div = document.createElement('div');
    div.innerHTML = renderMarkdown('$\\rule{1em}{2em}$');
    expect(div.querySelector<HTMLElement>('.katex-html .rule')!.style.borderTopWidth).toBe('2em');
  });
});

describe('rendered answers are clipped to their box', () => {
  // KaTeX's cap is a minimum of sizes: a negative \kern or \raisebox is not capped, and
  // only the clip keeps it inside the answer. jsdom has no layout, so the rule is checked
  // where it is written.
  // Vitest runs from ui/.
  it('has paint containment on .md in app.css', () => {
    const css = readFileSync(resolve(process.cwd(), 'src/app.css'), 'utf8');
    const block = /(?:^|\n)\.md \{([^}]*)\}/.exec(css)?.[1] ?? '';
    expect(block).toMatch(/contain:\s*paint/);
  });
});
