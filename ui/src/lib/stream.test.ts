import { describe, expect, it, vi } from 'vitest';
import { applyEvents, initialStream, FrameBatcher } from './stream';
import type { ChatEvent } from './types';

const r = (text: string): ChatEvent => ({ type: 'reasoning', text });
const t = (text: string): ChatEvent => ({ type: 'token', text });

describe('applyEvents (delta reducer)', () => {
  it('concatenates reasoning and answer deltas separately, in order', () => {
    const s = applyEvents(initialStream(), [r('Let me '), r('think.'), t('Hello'), t(', '), t('world')]);
    expect(s.reasoning).toBe('Let me think.');
    expect(s.content).toBe('Hello, world');
    expect(s.reasoningDeltas).toBe(2);
    expect(s.answerDeltas).toBe(3);
  });

  it('counts the tokens a joined event holds, so live counts and speeds stay right', () => {
    const s = applyEvents(initialStream(), [
      { type: 'reasoning', text: 'Let me think it over.', tokens: 6 },
      { type: 'token', text: 'Hello, world', tokens: 3 },
      t('!'),
    ]);
    expect(s.reasoningDeltas).toBe(6);
    expect(s.answerDeltas).toBe(4);
  });

  it('accumulates across batches without losing or duplicating text', () => {
    let s = initialStream();
    const words = 'the quick brown fox jumps over the lazy dog'.split(' ').map((w) => w + ' ');
    for (let i = 0; i < words.length; i += 2) s = applyEvents(s, words.slice(i, i + 2).map(t));
    expect(s.content).toBe(words.join(''));
  });

  it('does not mutate the previous state', () => {
    const a = applyEvents(initialStream(), [t('x')]);
    const b = applyEvents(a, [t('y')]);
    expect(a.content).toBe('x');
    expect(b.content).toBe('xy');
  });

  it('records started, done (usage, metrics, stop reason) and ignores deltas after done', () => {
    const done: ChatEvent = {
      type: 'done',
      stop_reason: 'max_tokens',
      usage: { prompt_tokens: 5, cached_prompt_tokens: 0, completion_tokens: 2, reasoning_tokens: 0, answer_tokens: 2 },
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      metrics: { gen_tps: 10 } as any,
    };
    const s = applyEvents(initialStream(), [
      { type: 'started', request_id: 'r', model: 'm', seed: 7, reasoning_format: 'none', prompt_tokens: 5, cached_prompt_tokens: 0 },
      t('a'),
      t('b'),
      done,
      t('late'),
    ]);
    expect(s.started).toBe(true);
    expect(s.seed).toBe(7);
    expect(s.done).toBe(true);
    expect(s.stop_reason).toBe('max_tokens');
    expect(s.usage?.answer_tokens).toBe(2);
    expect(s.content).toBe('ab');
  });

  it('turns an error event into a finished stream with the error kept', () => {
    const s = applyEvents(initialStream(), [t('partial'), { type: 'error', code: 'oom', message: 'out of memory' }]);
    expect(s.done).toBe(true);
    expect(s.error).toEqual({ code: 'oom', message: 'out of memory' });
    expect(s.content).toBe('partial');
  });
});

describe('FrameBatcher', () => {
  it('delivers many deltas in one flush per frame', () => {
    const frames: (() => void)[] = [];
    const flushes: ChatEvent[][] = [];
    const b = new FrameBatcher<ChatEvent>((batch) => flushes.push(batch), (cb) => frames.push(cb));
    for (let i = 0; i < 200; i++) b.push(t(`${i} `));
    expect(frames).toHaveLength(1); // only one frame scheduled for 200 deltas
    expect(flushes).toHaveLength(0);
    frames.shift()!();
    expect(flushes).toHaveLength(1);
    expect(flushes[0]).toHaveLength(200);
    b.push(t('next'));
    expect(frames).toHaveLength(1);
    frames.shift()!();
    expect(flushes).toHaveLength(2);
  });

  it('feeds the reducer so the final text equals all deltas joined', () => {
    let state = initialStream();
    const frames: (() => void)[] = [];
    const b = new FrameBatcher<ChatEvent>((batch) => (state = applyEvents(state, batch)), (cb) => frames.push(cb));
    const text = 'Streaming at two hundred tokens per second must not lag.';
    for (const ch of text) b.push(t(ch));
    while (frames.length) frames.shift()!();
    expect(state.content).toBe(text);
  });

  it('flush() applies pending items at once and close() stops accepting more', () => {
    const fn = vi.fn();
    const b = new FrameBatcher<number>(fn, () => {});
    b.push(1);
    b.push(2);
    b.flush();
    expect(fn).toHaveBeenCalledWith([1, 2]);
    b.close();
    b.push(3);
    b.flush();
    expect(fn).toHaveBeenCalledTimes(1);
    expect(b.pending).toBe(0);
  });

  it('uses requestAnimationFrame by default', () => {
    const raf = vi.fn<(cb: FrameRequestCallback) => number>(() => 1);
    vi.stubGlobal('requestAnimationFrame', raf);
    const b = new FrameBatcher<number>(() => {});
    b.push(1);
    b.push(2);
    expect(raf).toHaveBeenCalledTimes(1);
    vi.unstubAllGlobals();
  });
});
