import { afterEach, describe, expect, it } from 'vitest';
import { mockIPC } from '@tauri-apps/api/mocks';
import { LEGACY_PRESETS_KEY, loadPresets } from './presets';
import { defaultSettings } from './settings';
import type { Preset } from './types';

function fakeDb() {
  const db = new Map<string, Preset>();
  const calls: string[] = [];
  mockIPC((cmd, raw) => {
    const args = (raw ?? {}) as Record<string, unknown>;
    calls.push(cmd);
    if (cmd === 'list_presets') return [...db.values()];
    if (cmd === 'save_preset') {
      const p = { name: String(args.name), settings: args.settings, created_at: 1, updated_at: 1 } as Preset;
      db.set(p.name, p);
      return p;
    }
    return null;
  });
  return { db, calls };
}

afterEach(() => localStorage.clear());

describe('presets come from the history database', () => {
  it('lists what the database has and touches nothing else', async () => {
    const { db, calls } = fakeDb();
    db.set('Precise', { name: 'Precise', settings: defaultSettings(), created_at: 1, updated_at: 1 });
    expect((await loadPresets()).map((p) => p.name)).toEqual(['Precise']);
    expect(calls).toEqual(['list_presets']);
  });

  it('moves presets an older version kept in localStorage, once', async () => {
    const { db, calls } = fakeDb();
    db.set('Kept', { name: 'Kept', settings: defaultSettings(), created_at: 1, updated_at: 1 });
    const creative = { ...defaultSettings(), sampling: { ...defaultSettings().sampling, temperature: 1.3 } };
    localStorage.setItem(LEGACY_PRESETS_KEY, JSON.stringify({ Creative: creative, Kept: defaultSettings() }));
    const list = await loadPresets();
    expect(list.map((p) => p.name).sort()).toEqual(['Creative', 'Kept']);
    expect(db.get('Creative')?.settings.sampling.temperature).toBe(1.3);
    // "Kept" already existed: not overwritten, not saved again.
    expect(calls.filter((c) => c === 'save_preset')).toHaveLength(1);
    expect(localStorage.getItem(LEGACY_PRESETS_KEY)).toBeNull();
    calls.length = 0;
    await loadPresets();
    expect(calls).toEqual(['list_presets']);
  });

  it('keeps the legacy presets when saving fails, to retry next time', async () => {
    mockIPC((cmd) => {
      if (cmd === 'list_presets') return [];
      throw { code: 'storage_full', message: 'disk full' };
    });
    localStorage.setItem(LEGACY_PRESETS_KEY, JSON.stringify({ A: defaultSettings() }));
    await expect(loadPresets()).rejects.toMatchObject({ code: 'storage_full' });
    expect(localStorage.getItem(LEGACY_PRESETS_KEY)).not.toBeNull();
  });
});
