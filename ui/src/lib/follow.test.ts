import { describe, expect, it } from 'vitest';
import { followTarget } from './follow';

describe('following a streaming answer', () => {
  it('does not scroll while the end of the text is in view', () => {
    expect(followTarget(0, 600, 300)).toBeNull();
    expect(followTarget(1000, 600, 1570)).toBeNull();
  });

  it('jumps to leave a third of the view free once the text reaches the bottom', () => {
    const top = followTarget(1000, 600, 1590);
    expect(top).toBe(1590 - 600 + 200);
    // The following frames, with a few more lines, do not scroll again.
    let scrolls = 0;
    let scrollTop = top ?? 0;
    for (let end = 1590; end < 1590 + 180; end += 6) {
      const t = followTarget(scrollTop, 600, end);
      if (t !== null) {
        scrolls++;
        scrollTop = t;
      }
    }
    expect(scrolls).toBe(0);
  });

  it('scrolls about once per third of a view over a long answer', () => {
    let scrollTop = 0;
    let scrolls = 0;
    for (let end = 0; end < 6000; end += 4) {
      const t = followTarget(scrollTop, 600, end);
      if (t !== null) {
        scrolls++;
        scrollTop = t;
      }
    }
    expect(scrolls).toBeGreaterThan(6000 / 600);
    expect(scrolls).toBeLessThan(6000 / 200 + 2);
  });
});
