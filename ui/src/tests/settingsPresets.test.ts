// Presets in the settings drawer are created, applied, renamed and deleted through the
// shell's preset commands (the history database), never localStorage.
import { afterEach, describe, expect, it } from 'vitest';
import { flushSync, mount, unmount, tick } from 'svelte';
import { mockIPC } from '@tauri-apps/api/mocks';
import type { Preset } from '../lib/types';

let drawer: Record<string, unknown> | null = null;
afterEach(() => {
  if (drawer) unmount(drawer);
  drawer = null;
  document.body.innerHTML = '';
  localStorage.clear();
});

async function settle() {
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 10));
    await tick();
    flushSync();
  }
}

const q = (id: string) => document.querySelector(`[data-testid="${id}"]`) as HTMLElement | null;
const names = () => [...document.querySelectorAll('[data-testid="preset-list"] li span')].map((e) => e.textContent);

describe('presets in the settings drawer', () => {
  it('saves, applies, renames and deletes through the database commands', async () => {
    const db = new Map<string, Preset>();
    const calls: { cmd: string; args: Record<string, unknown> }[] = [];
    mockIPC((cmd, raw) => {
      const args = (raw ?? {}) as Record<string, unknown>;
      if (cmd.endsWith('preset') || cmd === 'list_presets') calls.push({ cmd, args });
      switch (cmd) {
        case 'list_presets':
          return [...db.values()].sort((a, b) => a.name.localeCompare(b.name));
        case 'save_preset': {
          const p = { name: String(args.name), settings: args.settings, created_at: 1, updated_at: 1 } as Preset;
          db.set(p.name, p);
          return p;
        }
        case 'rename_preset': {
          const p = db.get(String(args.from));
          if (!p) throw { code: 'not_found', message: 'gone' };
          if (db.has(String(args.to))) throw { code: 'invalid_input', message: `a preset named '${String(args.to)}' already exists` };
          db.delete(p.name);
          db.set(String(args.to), { ...p, name: String(args.to) });
          return null;
        }
        case 'delete_preset':
          db.delete(String(args.name));
          return null;
        default:
          return null;
      }
    });
    const { default: SettingsDrawer } = await import('../components/SettingsDrawer.svelte');
    const { settingsStore } = await import('../lib/stores');
    const { defaultSettings } = await import('../lib/settings');
    settingsStore.settings = defaultSettings();
    settingsStore.settings.sampling.temperature = 0.2;
    const target = document.createElement('div');
    document.body.appendChild(target);
    drawer = mount(SettingsDrawer, { target, props: { onclose: () => {} } });
    await settle();
    expect(names()).toEqual([]);

    const name = q('preset-name') as HTMLInputElement;
    name.value = 'Precise';
    name.dispatchEvent(new Event('input', { bubbles: true }));
    flushSync();
    q('preset-save')?.click();
    await settle();
    expect(names()).toEqual(['Precise']);
    expect(db.get('Precise')?.settings.sampling.temperature).toBe(0.2);
    expect(localStorage.getItem('conclave.presets.v1')).toBeNull();

    // Apply: the form takes the preset's settings.
    settingsStore.settings.sampling.temperature = 1.5;
    const apply = document.querySelector('select[aria-label="Apply a preset"]') as HTMLSelectElement;
    apply.value = 'Precise';
    apply.dispatchEvent(new Event('change', { bubbles: true }));
    await settle();
    expect(settingsStore.settings.sampling.temperature).toBe(0.2);

    // Rename, then a clash shows the core's message.
    q('preset-rename')?.click();
    flushSync();
    const input = q('preset-rename-input') as HTMLInputElement;
    input.value = 'Exact';
    input.dispatchEvent(new Event('input', { bubbles: true }));
    input.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
    await settle();
    expect(names()).toEqual(['Exact']);
    db.set('Other', { name: 'Other', settings: db.get('Exact')!.settings, created_at: 1, updated_at: 1 });
    q('preset-rename')?.click();
    flushSync();
    const again = q('preset-rename-input') as HTMLInputElement;
    again.value = 'Other';
    again.dispatchEvent(new Event('input', { bubbles: true }));
    again.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
    await settle();
    expect(q('preset-error')?.textContent).toContain("a preset named 'Other' already exists");

    (document.querySelector('[aria-label="Delete preset Exact"]') as HTMLElement).click();
    await settle();
    expect(names()).toEqual(['Other']);
    expect(calls.map((c) => c.cmd)).toContain('delete_preset');
    expect(calls.find((c) => c.cmd === 'rename_preset')?.args).toEqual({ from: 'Precise', to: 'Exact' });
  });
});
