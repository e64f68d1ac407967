import { describe, expect, it } from 'vitest';
import { fitSuffix, fitWarning, initialModel } from './modelChoice';
import type { FitEstimate, ModelInfo } from './types';

function model(id: string, error: string | null = null): ModelInfo {
  return {
    id, name: id.toUpperCase(), path: `/m/${id}.gguf`, size_bytes: 1, architecture: null, quantization: null,
    parameter_count: null, context_length: null, has_chat_template: true, reasoning_format: null, error, gpu_layers: null,
  };
}

function fit(kind: FitEstimate['fit'], total: number, free: number | null): FitEstimate {
  return {
    n_ctx: 4096, weights_bytes: total, kv_cache_bytes: 0, compute_bytes: 0, compute_reserved_bytes: 0,
    overhead_bytes: 0, total_bytes: total, available_bytes: free, fit: kind, notes: [],
  };
}

describe('first start picks a model', () => {
  it('the only usable model is selected', () => {
    expect(initialModel([model('a')], null)).toBe('a');
    expect(initialModel([model('a'), model('b', 'truncated file')], null)).toBe('a');
  });
  it('the last one used wins over everything else', () => {
    expect(initialModel([model('a'), model('b')], 'b')).toBe('b');
  });
  it('several models and no history: nothing is guessed', () => {
    expect(initialModel([model('a'), model('b')], null)).toBeNull();
    expect(initialModel([model('a'), model('b')], 'gone')).toBeNull();
  });
  it('a last-used model that is now broken is not picked', () => {
    expect(initialModel([model('a', 'bad'), model('b')], 'a')).toBe('b');
    expect(initialModel([], 'a')).toBeNull();
  });
});

describe('fit in the picker', () => {
  it('the option shows the estimate', () => {
    expect(fitSuffix(fit('fits', 300 * 1024 * 1024, null))).toBe(' · fits (300 MB)');
    expect(fitSuffix(fit('wont_fit', 20 * 1024 ** 3, 8 * 1024 ** 3))).toBe(" · won't fit (20.0 GB)");
    expect(fitSuffix(null)).toBe('');
  });
  it('only a model that will not fit asks before loading', () => {
    expect(fitWarning('Big', fit('fits', 1, 2))).toBeNull();
    expect(fitWarning('Big', fit('tight', 1, 2))).toBeNull();
    expect(fitWarning('Big', null)).toBeNull();
    expect(fitWarning('Big', fit('wont_fit', 20 * 1024 ** 3, 8 * 1024 ** 3))).toBe(
      'Big needs about 20.0 GB at 4,096 tokens of context, 8.0 GB free. Loading it may make the computer swap or the load fail.',
    );
  });
});
