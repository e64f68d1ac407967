import { flushSync, mount, unmount } from 'svelte';
import { describe, expect, it } from 'vitest';
import Markdown from '../components/Markdown.svelte';
import { renderMarkdown, StreamingMarkdown } from './markdown';

// An answer with every kind of top-level block a model writes, including ones that stay
// open across many chunks (a fenced code block, a list, a table).
const ANSWER = [
  '# Lighthouses',
  '',
  'A lighthouse is a tower with a **lamp**, built to guide ships; see [the list][l].',
  '',
  '1. Pharos of Alexandria',
  '2. Tower of Hercules',
  '',
  '   Still in use.',
  '',
  '```python',
  'def beam(x):',
  '    return x * 2',
  '```',
  '',
  '| name | height |',
  '|---|---|',
  '| Jeddah | 133 m |',
  '',
  '> Keep the light burning.',
  '',
  'Energy $E = mc^2$ and',
  '',
  '$$\\int_0^1 x\\,dx$$',
  '',
  '---',
  '',
  'Ελληνικά και emoji 🚢 at the end.',
  '',
  '[l]: https://example.org/lighthouses',
].join('\n');

function chunks(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(0, i + size));
  return out;
}

describe('streaming Markdown', () => {
  it("renders the same HTML as a whole render, whatever the chunk size", { timeout: 60_000 }, () => {
    for (const size of [1, 3, 16, 61]) {
      const r = new StreamingMarkdown();
      for (const prefix of chunks(ANSWER, size)) {
        const view = r.update(prefix);
        expect(view.blocks.map((b) => b.html).join('') + view.tail).toBe(renderMarkdown(prefix));
      }
    }
  });

  it('keeps each finished block and lexes only the open tail', () => {
    const r = new StreamingMarkdown();
    let first = r.update('First paragraph.\n\nSecond').blocks[0];
    expect(first.html).toContain('First paragraph.');
    for (let i = 0; i < 50; i++) {
      const view = r.update(`First paragraph.\n\nSecond${' word'.repeat(i)}`);
      expect(view.blocks[0]).toBe(first); // the same object: never rendered again
      expect(view.tail).toContain('Second');
    }
    // A text that does not extend the old one (an edit) starts over.
    const edited = r.update('Other text.\n\nMore');
    expect(edited.blocks[0]).not.toBe(first);
    first = edited.blocks[0];
    expect(first.html).toContain('Other text.');
  });

  it('does not touch the DOM of finished blocks while the answer grows', () => {
    const target = document.createElement('div');
    const props = $state({ source: 'Intro paragraph.\n\n- one' });
    const view = mount(Markdown, { target, props });
    flushSync();
    const intro = target.querySelector('p');
    expect(intro?.textContent).toBe('Intro paragraph.');
    const seen = new Set<Node>();
    const observer = new MutationObserver((records) => {
      for (const r of records) for (const n of r.removedNodes) seen.add(n);
    });
    observer.observe(target, { childList: true, subtree: true, characterData: true });
    let text = props.source;
    for (let i = 0; i < 40; i++) {
      text += i % 10 === 9 ? '\n\nNext paragraph' : ` word${i}`;
      props.source = text;
      flushSync();
    }
    observer.takeRecords().forEach((r) => r.removedNodes.forEach((n) => seen.add(n)));
    observer.disconnect();
    expect(target.contains(intro)).toBe(true);
    expect(seen.has(intro as Node)).toBe(false);
    expect(target.querySelectorAll('p').length).toBeGreaterThan(3);
    unmount(view);
  });
});
