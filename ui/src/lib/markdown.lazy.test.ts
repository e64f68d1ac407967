import { describe, expect, it, vi } from 'vitest';
import { loadHighlighter, loadKatex, onRenderersLoaded, renderMarkdown } from './markdown';

const el = (html: string) => {
  const div = document.createElement('div');
  div.innerHTML = html;
  return div;
};

describe('KaTeX and highlight.js load on first use', () => {
  it('shows source until loaded, then tells the views to render again', async () => {
    let loads = 0;
    const stop = onRenderersLoaded(() => loads++);
    const src = 'Area: $\\pi r^2$\n\n```python\ndef f(x):\n    return "<b>"\n```';

    const before = el(renderMarkdown(src));
    expect(before.querySelector('.katex')).toBeNull();
    expect(before.querySelector('code.math-source')?.textContent).toBe('\\pi r^2');
    expect(before.querySelector('.hljs-keyword')).toBeNull();
    expect(before.querySelector('pre code')?.textContent).toContain('return "<b>"');

    // The first render asked for both; waiting on the same loads sees them finish.
    await Promise.all([loadKatex(), loadHighlighter()]);
    expect(loads).toBe(2);

    const after = el(renderMarkdown(src));
    expect(after.querySelector('.katex annotation')?.textContent).toBe('\\pi r^2');
    expect(after.querySelector('.hljs-keyword')?.textContent).toBe('def');
    stop();
  });

  it('does not load highlight.js for text without code', async () => {
    // A fresh module: no earlier render has asked for anything.
    vi.resetModules();
    const fresh = await import('./markdown');
    let loads = 0;
    fresh.onRenderersLoaded(() => loads++);
    fresh.renderMarkdown('Just **words**, and a `snippet`.');
    await new Promise((r) => setTimeout(r, 50));
    expect(loads).toBe(0);
  });
});
