// After a thinking turn the earlier thought is left out of the prompt, so the cache is
// reused only up to it: the cost line says how many prompt tokens were decoded again.
import { describe, expect, it } from 'vitest';
import { costItems } from './format';
import type { Metrics, Usage } from './types';

const usage = (prompt: number, cached: number): Usage => ({
  prompt_tokens: prompt,
  cached_prompt_tokens: cached,
  completion_tokens: 32,
  reasoning_tokens: 0,
  answer_tokens: 32,
});

describe('the cost line after dropped thoughts', () => {
  it('says how many prompt tokens were decoded again', () => {
    const m = { thoughts_dropped_tokens: 977, drafted_tokens: 0 } as Metrics;
    const item = costItems(m, usage(174, 47)).find((i) => i.key === 'reread');
    expect(item?.value).toBe('127 prompt tok decoded again');
    expect(item?.title).toContain('47 of 174 prompt tokens came from the cache');
  });

  it('says nothing when no thought was dropped or nothing was decoded', () => {
    const none = { thoughts_dropped_tokens: 0, drafted_tokens: 0 } as Metrics;
    expect(costItems(none, usage(174, 47)).map((i) => i.key)).not.toContain('reread');
    const all = { thoughts_dropped_tokens: 977, drafted_tokens: 0 } as Metrics;
    expect(costItems(all, usage(174, 174)).map((i) => i.key)).not.toContain('reread');
  });
});
