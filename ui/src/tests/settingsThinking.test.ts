// The settings drawer offers thinking Off only when the loaded model's template can
// switch thinking off; otherwise it says why (the reason comes from the core).
import { afterEach, describe, expect, it } from 'vitest';
import { flushSync, mount, unmount, tick } from 'svelte';
import { mockIPC } from '@tauri-apps/api/mocks';
import type { LoadedModel } from '../lib/types';

let drawer: Record<string, unknown> | null = null;
afterEach(() => {
  if (drawer) unmount(drawer);
  drawer = null;
  document.body.innerHTML = '';
  localStorage.clear();
});

function loaded(over: Partial<LoadedModel>): LoadedModel {
  return {
    model_id: 'm1', name: 'QwQ-32B', load_ms: 10, n_ctx: 2048, n_ctx_train: 4096, has_chat_template: true,
    template_name: 'model', reasoning_format: 'qwq', thinking_off_available: true,
    thinking_off_reason: null, devices: '', ...over,
  };
}

async function open(model: LoadedModel | null, think: 'auto' | 'on' | 'off' = 'auto') {
  // The API server section asks the backend for its state when it mounts.
  mockIPC(() => null);
  const { default: SettingsDrawer } = await import('../components/SettingsDrawer.svelte');
  const { store } = await import('../lib/store.svelte');
  store.loaded = model;
  store.settings.think = think;
  const target = document.createElement('div');
  document.body.appendChild(target);
  drawer = mount(SettingsDrawer, { target, props: { onclose: () => {} } });
  await tick();
  flushSync();
  const select = document.querySelector('[data-testid="setting-think"]') as HTMLSelectElement;
  const off = select.querySelector('option[value="off"]') as HTMLOptionElement;
  const note = () => document.querySelector('[data-testid="think-off-unavailable"]') as HTMLElement | null;
  return { off, note };
}

describe('thinking Off in the settings drawer', () => {
  it('is a plain choice when the template can switch thinking off', async () => {
    const { off, note } = await open(loaded({ reasoning_format: 'qwen3' }));
    expect(off.disabled).toBe(false);
    expect(off.textContent?.trim()).toBe('Off');
    expect(note()).toBeNull();
  });

  it('is disabled with the reason when the model always thinks', async () => {
    const reason = "QwQ's template always opens a <think> block";
    const { off, note } = await open(loaded({ thinking_off_available: false, thinking_off_reason: reason }));
    expect(off.disabled).toBe(true);
    expect(off.textContent).toContain('unavailable');
    expect(off.title).toBe(reason);
    expect(note()?.textContent).toContain(reason);
    expect(note()?.getAttribute('role')).toBeNull();
  });

  it('warns when Off was already chosen for a model that cannot honour it', async () => {
    const { note } = await open(
      loaded({ reasoning_format: 'gpt-oss', thinking_off_available: false, thinking_off_reason: 'gpt-oss always reasons' }),
      'off',
    );
    expect(note()?.getAttribute('role')).toBe('alert');
    expect(note()?.textContent).toContain('Thinking stays on');
    expect(note()?.textContent).toContain('gpt-oss always reasons');
  });

  it('offers Off while no model is loaded', async () => {
    const { off, note } = await open(null);
    expect(off.disabled).toBe(false);
    expect(note()).toBeNull();
  });
});
