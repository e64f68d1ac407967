import { afterEach, describe, expect, it, vi } from 'vitest';
import { applyTheme, savedTheme } from './theme';

function fakeSystem(dark: boolean) {
  const listeners: Array<() => void> = [];
  const query = {
    matches: dark,
    addEventListener: (_: string, fn: () => void) => listeners.push(fn),
  };
  vi.stubGlobal('matchMedia', () => query);
  window.matchMedia = (() => query) as unknown as typeof window.matchMedia;
  return {
    set(d: boolean) {
      query.matches = d;
      listeners.forEach((f) => f());
    },
  };
}

describe('theme', () => {
  afterEach(() => {
    localStorage.clear();
    vi.unstubAllGlobals();
  });

  it('a fixed choice is stored and applied', () => {
    fakeSystem(false);
    applyTheme('dark');
    expect(document.documentElement.dataset.theme).toBe('dark');
    expect(savedTheme()).toBe('dark');
  });

  it('system follows prefers-color-scheme, also when it changes', () => {
    const system = fakeSystem(true);
    applyTheme('system');
    expect(savedTheme()).toBe('system');
    expect(document.documentElement.dataset.theme).toBe('dark');
    system.set(false);
    expect(document.documentElement.dataset.theme).toBe('light');
  });
});
