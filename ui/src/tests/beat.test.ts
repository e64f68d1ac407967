// The waiting dots move on a slow beat (a few repaints a second), not through an endless
// CSS animation that WebKit would repaint at the display's frame rate; and they stand still
// for users who ask for reduced motion.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { flushSync, mount, unmount } from 'svelte';
import TypingDots from '../components/TypingDots.svelte';

let view: Record<string, unknown> | null = null;
afterEach(() => {
  if (view) unmount(view);
  view = null;
  document.body.innerHTML = '';
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

function show(): () => number {
  const target = document.createElement('div');
  document.body.appendChild(target);
  view = mount(TypingDots, { target });
  flushSync();
  return () => [...target.querySelectorAll('.typing span')].findIndex((s) => s.classList.contains('lit'));
}

describe('TypingDots', () => {
  it('lights one dot at a time and moves it every 400 ms', () => {
    vi.useFakeTimers();
    const lit = show();
    expect(lit()).toBe(0);
    vi.advanceTimersByTime(399);
    flushSync();
    expect(lit()).toBe(0);
    vi.advanceTimersByTime(1);
    flushSync();
    expect(lit()).toBe(1);
    vi.advanceTimersByTime(800);
    flushSync();
    expect(lit()).toBe(0);
  });

  it('stands still for reduced motion', () => {
    vi.useFakeTimers();
    vi.stubGlobal('matchMedia', (q: string) => ({ matches: q.includes('reduce'), media: q }));
    const lit = show();
    vi.advanceTimersByTime(2000);
    flushSync();
    expect(lit()).toBe(0);
  });
});
