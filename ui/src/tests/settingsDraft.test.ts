// The settings drawer offers the library's models as draft models, keeps a path chosen
// elsewhere, and stores the choice with the other settings.
import { afterEach, describe, expect, it } from 'vitest';
import { flushSync, mount, tick, unmount } from 'svelte';
import { mockIPC } from '@tauri-apps/api/mocks';
import { library } from './fixtures';

let drawer: Record<string, unknown> | null = null;
afterEach(() => {
  if (drawer) unmount(drawer);
  drawer = null;
  document.body.innerHTML = '';
  localStorage.clear();
});

async function open(draft: string | null) {
  mockIPC(() => null);
  const { default: SettingsDrawer } = await import('../components/SettingsDrawer.svelte');
  const { modelStore, settingsStore } = await import('../lib/stores');
  modelStore.models = library();
  settingsStore.settings.draft_model = draft;
  const target = document.createElement('div');
  document.body.appendChild(target);
  drawer = mount(SettingsDrawer, { target, props: { onclose: () => {} } });
  await tick();
  flushSync();
  const select = document.querySelector('[data-testid="setting-draft-model"]') as HTMLSelectElement;
  return { select, settingsStore };
}

describe('draft model in the settings drawer', () => {
  it('lists the loadable models of the library and stores the one picked', async () => {
    const { select, settingsStore } = await open(null);
    expect(select.tagName).toBe('SELECT');
    expect(Array.from(select.options).map((o) => o.textContent)).toEqual(['None', 'smol', 'gemma']);
    expect(select.value).toBe('');
    select.value = '/m/smol.gguf';
    select.dispatchEvent(new Event('change', { bubbles: true }));
    flushSync();
    expect(settingsStore.settings.draft_model).toBe('/m/smol.gguf');
    expect(JSON.stringify(localStorage)).toContain('/m/smol.gguf');
    select.value = '';
    select.dispatchEvent(new Event('change', { bubbles: true }));
    flushSync();
    expect(settingsStore.settings.draft_model).toBeNull();
  });

  it('keeps a path that is not in the library as a choice', async () => {
    const { select } = await open('/elsewhere/tiny.gguf');
    expect(Array.from(select.options).map((o) => o.value)).toContain('/elsewhere/tiny.gguf');
    expect(select.value).toBe('/elsewhere/tiny.gguf');
  });
});
