// The "Local API server" settings section against a mocked shell: it shows the saved
// choice, switches on with the port typed, shows the base URL, errors in place, and off.
import { afterEach, describe, expect, it } from 'vitest';
import { flushSync, mount, tick, unmount } from 'svelte';
import { mockIPC } from '@tauri-apps/api/mocks';
import type { ApiServerSettings, ApiServerStatus } from '../lib/types';
import ApiServerSection from '../components/ApiServerSection.svelte';

let view: Record<string, unknown> | null = null;
afterEach(() => {
  if (view) unmount(view);
  view = null;
  document.body.innerHTML = '';
});

async function settle() {
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 5));
    await tick();
    flushSync();
  }
}
const q = (id: string) => document.querySelector(`[data-testid="${id}"]`) as HTMLInputElement | null;
function setValue(id: string, value: string) {
  const el = q(id)!;
  el.value = value;
  el.dispatchEvent(new Event('input', { bubbles: true }));
  el.dispatchEvent(new Event('change', { bubbles: true }));
}
function toggle(id: string) {
  q(id)!.click();
}

/** A shell whose server starts unless the port is 8081 (in use). */
function fakeShell(saved: Partial<ApiServerSettings> = {}) {
  const calls: Record<string, unknown>[] = [];
  let settings: ApiServerSettings = { enabled: false, host: '127.0.0.1', port: 8080, api_key: null, save_history: false, ...saved };
  const status = (): ApiServerStatus => {
    const busy = settings.enabled && settings.port === 8081;
    const running = settings.enabled && !busy;
    return {
      running,
      base_url: running ? `http://${settings.host}:${settings.port}/v1` : null,
      error: busy ? { code: 'api_bind_failed', message: 'cannot listen on 127.0.0.1:8081: Address already in use (os error 98)' } : null,
      settings: { ...settings },
    };
  };
  mockIPC((cmd, raw) => {
    const a = raw as Record<string, unknown>;
    switch (cmd) {
      case 'api_server_status':
        return status();
      case 'set_api_server':
        calls.push(a);
        if (a.host === '') return Promise.reject({ code: 'invalid_input', message: 'the bind address must not be empty' });
        settings = { enabled: a.enabled as boolean, host: a.host as string, port: a.port as number, api_key: a.apiKey as string | null, save_history: a.saveHistory as boolean };
        return status();
      default:
        return Promise.reject({ code: 'unknown_command', message: cmd });
    }
  });
  return calls;
}

describe('Local API server section', () => {
  it('is off by default, switches on with the chosen port and shows the base URL, then off', async () => {
    const calls = fakeShell();
    view = mount(ApiServerSection, { target: document.body });
    await settle();
    expect(q('api-enabled')!.checked).toBe(false);
    expect(q('api-port')!.value).toBe('8080');
    expect(q('api-status')!.textContent).toContain('Off');

    setValue('api-port', '9123');
    await settle();
    expect(calls.at(-1)).toEqual({ enabled: false, host: '127.0.0.1', port: 9123, apiKey: null, saveHistory: false });

    toggle('api-enabled');
    await settle();
    expect(calls.at(-1)).toMatchObject({ enabled: true, port: 9123 });
    expect(q('api-status')!.textContent).toContain('Serving on http://127.0.0.1:9123/v1');
    expect(q('api-copy')).not.toBeNull();
    expect(q('api-error')).toBeNull();

    setValue('api-key', '  secret  ');
    await settle();
    expect(calls.at(-1)).toMatchObject({ enabled: true, apiKey: 'secret' });

    toggle('api-enabled');
    await settle();
    expect(calls.at(-1)).toMatchObject({ enabled: false });
    expect(q('api-status')!.textContent).toContain('Off');
    expect(q('api-copy')).toBeNull();
  });

  it('generates a 128-bit key, shows it and saves it', async () => {
    const calls = fakeShell();
    view = mount(ApiServerSection, { target: document.body });
    await settle();
    expect(q('api-key')!.type).toBe('password');
    toggle('api-key-generate');
    await settle();
    const key = calls.at(-1)!.apiKey as string;
    expect(key).toMatch(/^[0-9a-f]{32}$/);
    expect(q('api-key')!.value).toBe(key);
    expect(q('api-key')!.type).toBe('text');
    toggle('api-key-generate');
    await settle();
    expect(calls.at(-1)!.apiKey).not.toBe(key);
  });

  it('shows the saved state after a restart, and a start failure in place', async () => {
    fakeShell({ enabled: true, port: 8081, api_key: 'k', save_history: true });
    view = mount(ApiServerSection, { target: document.body });
    await settle();
    expect(q('api-enabled')!.checked).toBe(true);
    expect(q('api-key')!.value).toBe('k');
    expect(q('api-save-history')!.checked).toBe(true);
    expect(q('api-status')!.textContent).toContain('Not running');
    expect(q('api-error')!.textContent).toContain('Address already in use');
  });

  it('refuses a bad port without calling the shell, and shows a rejection in place', async () => {
    const calls = fakeShell();
    view = mount(ApiServerSection, { target: document.body });
    await settle();
    setValue('api-port', '70000');
    await settle();
    expect(calls).toHaveLength(0);
    expect(q('api-error')!.textContent).toContain('1 to 65535');

    setValue('api-port', '8080');
    await settle();
    setValue('api-host', '');
    await settle();
    toggle('api-enabled');
    await settle();
    expect(q('api-error')!.textContent).toContain('bind address');
    expect(q('api-enabled')!.checked).toBe(false);
  });
});
