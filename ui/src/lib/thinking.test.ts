import { describe, expect, it } from 'vitest';
import { initialThink, thinkReducer, isOpen, type ThinkEvent, type ThinkState } from './thinking';

const run = (s: ThinkState, ...evs: ThinkEvent['type'][]) =>
  evs.reduce((acc, type) => thinkReducer(acc, { type } as ThinkEvent), s);

describe('thinking block state machine', () => {
  it('starts streaming (open) for a live answer and collapsed for history', () => {
    expect(initialThink(true)).toEqual({ phase: 'streaming', pinned: false });
    expect(initialThink(false).phase).toBe('collapsed');
  });

  it('collapses on the first answer token', () => {
    const s = run(initialThink(true), 'answer-start');
    expect(s.phase).toBe('collapsed');
    expect(isOpen(s)).toBe(false);
  });

  it('stays open when the user is reading it while it streams', () => {
    const s = run(initialThink(true), 'reading', 'answer-start');
    expect(s.phase).toBe('expanded');
    expect(run(s, 'end').phase).toBe('expanded');
  });

  it('stays open when the user re-expanded it by hand', () => {
    const s = run(initialThink(true), 'toggle', 'toggle', 'answer-start', 'end');
    expect(s.phase).toBe('expanded');
  });

  it('the user can close it while streaming and it does not reopen', () => {
    const s = run(initialThink(true), 'toggle');
    expect(s.phase).toBe('collapsed');
    expect(run(s, 'answer-start', 'end', 'reading').phase).toBe('collapsed');
  });

  it('collapses when the stream ends without an answer (cut off / stopped)', () => {
    expect(run(initialThink(true), 'end').phase).toBe('collapsed');
  });

  it('stays expandable after collapsing', () => {
    const s = run(initialThink(true), 'answer-start', 'toggle');
    expect(s).toEqual({ phase: 'expanded', pinned: true });
    expect(run(s, 'toggle').phase).toBe('collapsed');
  });
});
