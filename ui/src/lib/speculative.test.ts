import { describe, expect, it } from 'vitest';
import { APP_CONSTANTS } from './bindings';
import { costItems, speculativeText } from './format';
import { SPECULATIVE_MODES, defaultSettings, normalizeSettings } from './settings';
import type { Metrics } from './types';

describe('speculative decoding settings', () => {
  it('offers exactly the core modes, each with a label', () => {
    expect(SPECULATIVE_MODES.map((m) => m.value)).toEqual(APP_CONSTANTS.speculative_modes);
    for (const m of SPECULATIVE_MODES) expect(m.label).not.toBe('');
    expect(defaultSettings().speculative).toBe('auto');
    expect(defaultSettings().draft_model).toBeNull();
  });

  it('stored settings keep a known mode and a draft path, and default the rest', () => {
    expect(normalizeSettings({ speculative: 'lookup' }).speculative).toBe('lookup');
    expect(normalizeSettings({ speculative: 'off' }).speculative).toBe('off');
    expect(normalizeSettings({ speculative: 'fast' }).speculative).toBe('auto');
    expect(normalizeSettings(null).speculative).toBe('auto');
    expect(normalizeSettings({ draft_model: '  /m/small.gguf ' }).draft_model).toBe('/m/small.gguf');
    expect(normalizeSettings({ draft_model: '   ' }).draft_model).toBeNull();
    expect(normalizeSettings({ draft_model: 7 }).draft_model).toBeNull();
  });

  it('the cost line says what speculation bought, and nothing when it drafted nothing', () => {
    const m = { drafted_tokens: 530, accepted_tokens: 412 } as Metrics;
    expect(speculativeText(m)).toBe('speculative: 412 of 530 drafted accepted');
    const base = structuredClone(APP_CONSTANTS.default_settings);
    expect(base.speculative).toBe('auto');
    const keys = (x: Metrics) => costItems(x, null).map((i) => i.key);
    const none = { ...m, drafted_tokens: 0, accepted_tokens: 0 } as Metrics;
    expect(keys({ ...none, ...m } as Metrics)).toContain('speculative');
    expect(keys(none)).not.toContain('speculative');
  });
});
