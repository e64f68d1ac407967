import { describe, expect, it } from 'vitest';
import { shortcutFor } from './shortcuts';

const k = (key: string, o: Partial<{ ctrl: boolean; meta: boolean; shift: boolean; alt: boolean; field: boolean }> = {}) => ({
  key,
  ctrlKey: !!o.ctrl,
  metaKey: !!o.meta,
  shiftKey: !!o.shift,
  altKey: !!o.alt,
  inTextField: !!o.field,
});

describe('keyboard shortcuts', () => {
  it('maps the documented keys', () => {
    expect(shortcutFor(k('n', { ctrl: true }), false)).toBe('new-chat');
    expect(shortcutFor(k('N', { meta: true }), false)).toBe('new-chat');
    expect(shortcutFor(k('l', { ctrl: true, field: true }), false)).toBe('focus-input');
    expect(shortcutFor(k('k', { ctrl: true, field: true }), false)).toBe('search');
    expect(shortcutFor(k('ArrowUp', { ctrl: true }), false)).toBe('prev-conversation');
    expect(shortcutFor(k('ArrowDown', { ctrl: true, field: true }), false)).toBe('next-conversation');
  });
  it('Esc stops only while streaming', () => {
    expect(shortcutFor(k('Escape', { field: true }), true)).toBe('stop');
    expect(shortcutFor(k('Escape'), false)).toBe('escape');
  });
  it('/ focuses the input unless the user is typing', () => {
    expect(shortcutFor(k('/'), false)).toBe('focus-input');
    expect(shortcutFor(k('/', { field: true }), false)).toBeNull();
  });
  it('ignores plain keys', () => {
    expect(shortcutFor(k('n'), false)).toBeNull();
    expect(shortcutFor(k('ArrowUp'), false)).toBeNull();
  });
});
