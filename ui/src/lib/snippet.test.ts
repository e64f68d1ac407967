import { describe, expect, it } from 'vitest';
import { splitSnippet } from './snippet';

describe('splitSnippet', () => {
  it('splits \\u0001…\\u0002 into highlighted parts', () => {
    expect(splitSnippet('a \u0001mutex\u0002 is a \u0001lock\u0002.')).toEqual([
      { text: 'a ', hit: false },
      { text: 'mutex', hit: true },
      { text: ' is a ', hit: false },
      { text: 'lock', hit: true },
      { text: '.', hit: false },
    ]);
  });

  it('returns plain text untouched and keeps markup as text', () => {
    expect(splitSnippet('<img src=x onerror=alert(1)>')).toEqual([{ text: '<img src=x onerror=alert(1)>', hit: false }]);
    expect(splitSnippet('')).toEqual([]);
  });

  it('handles a hit at the start, an unclosed marker and stray closers', () => {
    expect(splitSnippet('\u0001x\u0002y')).toEqual([
      { text: 'x', hit: true },
      { text: 'y', hit: false },
    ]);
    expect(splitSnippet('a\u0001b')).toEqual([
      { text: 'a', hit: false },
      { text: 'b', hit: true },
    ]);
    expect(splitSnippet('a\u0002b')).toEqual([{ text: 'ab', hit: false }]);
  });

  it('keeps astral characters intact', () => {
    expect(splitSnippet('😀\u0001é\u0002')).toEqual([
      { text: '😀', hit: false },
      { text: 'é', hit: true },
    ]);
  });
});
