// The Compare, Leaderboard and Models screens of the real App against a mocked backend.
import { afterEach, describe, expect, it } from 'vitest';
import { flushSync, mount, tick, unmount } from 'svelte';
import { mockIPC } from '@tauri-apps/api/mocks';
import type { Channel } from '@tauri-apps/api/core';
import type { CompareOutput, DownloadProgress, ModelInfo } from '../lib/types';

const mk = (id: string, name: string, p: Partial<ModelInfo> = {}): ModelInfo => ({
  id, name, path: `/m/${name}.gguf`, size_bytes: 1e8, architecture: 'llama', quantization: 'Q4_1', parameter_count: 1.35e8,
  context_length: 8192, has_chat_template: true, reasoning_format: null, error: null, gpu_layers: null, ...p,
});
const models = [mk('s', 'smol'), mk('g', 'gemma'), mk('x', 'broken', { error: 'truncated file' })];

let app: Record<string, unknown> | null = null;
afterEach(() => {
  if (app) unmount(app);
  app = null;
  document.body.innerHTML = '';
  localStorage.clear();
});

async function settle(ms = 30) {
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, ms));
    await tick();
    flushSync();
  }
}
const q = (id: string) => document.querySelector(`[data-testid="${id}"]`) as HTMLElement | null;
const qa = (id: string) => Array.from(document.querySelectorAll(`[data-testid="${id}"]`)) as HTMLElement[];

async function start(view: 'compare' | 'leaderboard' | 'models') {
  const { default: App } = await import('../App.svelte');
  const { store } = await import('../lib/store.svelte');
  const { compareStore } = await import('../lib/compareStore.svelte');
  store.view = 'chat';
  store.models = [];
  store.modelsLoaded = false;
  compareStore.reset();
  compareStore.configs = [];
  compareStore.blind = false;
  compareStore.prompt = '';
  const target = document.createElement('div');
  document.body.appendChild(target);
  app = mount(App, { target });
  await settle();
  q(`nav-${view}`)!.click();
  await settle();
  return { store, cs: compareStore };
}

function setValue(el: HTMLElement, value: string, ev = 'input') {
  (el as HTMLInputElement).value = value;
  el.dispatchEvent(new Event(ev, { bubbles: true }));
  flushSync();
}

const summary = (blind: boolean): CompareOutput => ({
  type: 'summary', run_id: 'r1', blind, sequential: false, reason: null, fastest: 1, cheapest: 0, generation_seconds: 2, aggregate_tokens_per_second: 50,
  columns: [0, 1].map((i) => ({ column: i, label: blind ? `Model ${'AB'[i]}` : ['gemma', 'smol'][i], model: blind ? null : ['gemma.gguf', 'smol.gguf'][i], status: 'done' as const, error: null, stop_reason: 'eos' as const, ttft_ms: 120, tokens_per_second: [20, 30][i], thinking_tokens: 0, answer_tokens: 5, completion_tokens: 5, seconds: 1, energy_wh: [0.001, 0.004][i], energy_method: 'rapl', threads: 2, message_id: `m${i}` })),
});

describe('Compare screen', () => {
  it('streams two columns, hides names while blind, votes, reveals, highlights and diffs safely', async () => {
    let channel: Channel<CompareOutput> | null = null;
    let sent: Record<string, unknown> | null = null;
    let voted: unknown = null;
    let diffArgs: Record<string, unknown> | null = null;
    mockIPC((cmd, raw) => {
      const args = raw as Record<string, unknown>;
      switch (cmd) {
        case 'list_models':
          return models;
        case 'list_conversations':
          return [];
        case 'start_compare':
          channel = args.onEvent as Channel<CompareOutput>;
          sent = args.request as Record<string, unknown>;
          return { handle: 'r1', run_id: 'r1', conversation_id: 'c1', user_message_id: 'u1' };
        case 'vote_compare':
          voted = args;
          return [{ column: 0, model: 'gemma.gguf', sha256: null, message_id: 'm0' }, { column: 1, model: 'smol.gguf', sha256: null, message_id: 'm1' }];
        case 'compare_diff':
          diffArgs = args;
          return { answer: [{ op: 'equal', text: 'Paris ' }, { op: 'delete', text: '<img src=x onerror="window.__pwned=1">' }, { op: 'insert', text: '<b>bold</b>' }], thinking: [] };
        default:
          return null;
      }
    });
    const { cs } = await start('compare');
    // Two columns by default, on the first two usable models (the broken one is not offered).
    expect(qa('compare-column').length).toBe(2);
    const selects = qa('compare-model') as HTMLSelectElement[];
    expect(selects.map((s) => s.value)).toEqual(['s', 'g']);
    expect(Array.from(selects[0].options).map((o) => o.textContent)).toEqual(['smol', 'gemma']);
    // Add/remove before sending.
    q('compare-add')!.click();
    await settle();
    expect(qa('compare-column').length).toBe(3);
    qa('compare-remove')[2].click();
    await settle();
    expect(qa('compare-column').length).toBe(2);

    (q('compare-blind') as HTMLInputElement).click();
    setValue(q('compare-prompt')!, 'Capital of France?');
    q('compare-send')!.click();
    await settle();
    expect(sent).toMatchObject({ prompt: 'Capital of France?', options: { blind: true } });
    expect((sent!.columns as { model_id: string }[]).map((c) => c.model_id)).toEqual(['s', 'g']);

    channel!.onmessage({ type: 'plan', run_id: 'r1', conversation_id: 'c1', user_message_id: 'u1', blind: true, sequential: true, reason: 'the models do not fit in memory together', workers: 2, concurrency: 1, threads_per_worker: 2, memory_needed_bytes: 2e9, memory_budget_bytes: 1e9, columns: [0, 1].map((i) => ({ column: i, label: `Model ${'AB'[i]}`, model: null, lane: i })) });
    channel!.onmessage({ column: 0, type: 'token', text: 'Paris ' });
    channel!.onmessage({ column: 1, type: 'token', text: 'It is Paris.' });
    await settle();
    expect(q('compare-plan')?.textContent).toContain('do not fit in memory together');
    expect(qa('compare-name').map((e) => e.textContent)).toEqual(['Model A', 'Model B']);
    expect(qa('compare-answer').map((e) => e.textContent?.trim())).toEqual(['Paris', 'It is Paris.']);
    expect(qa('compare-figures').length).toBe(2);
    expect(q('compare-stop')).not.toBeNull();
    // No vote before the run is over.
    expect(q('vote-a')).toBeNull();

    channel!.onmessage({ column: 0, type: 'done', stop_reason: 'eos', usage: { prompt_tokens: 1, cached_prompt_tokens: 0, completion_tokens: 1, reasoning_tokens: 0, answer_tokens: 1 }, metrics: null as never });
    channel!.onmessage(summary(true));
    await settle();
    expect(document.body.textContent).not.toContain('gemma.gguf');
    const cols = qa('compare-column');
    expect(cols[1].classList.contains('fastest')).toBe(true);
    expect(cols[0].classList.contains('cheapest')).toBe(true);
    expect(q('compare-summary')?.textContent).toMatch(/Fastest: Model B.*Cheapest: Model A/);
    expect(qa('compare-figures')[1].textContent).toContain('30.0 t/s');
    // Names stay hidden, and "continue as chat" is not offered while blind.
    expect(q('compare-promote')).toBeNull();

    q('vote-b')!.click();
    await settle();
    expect(voted).toEqual({ runId: 'r1', vote: 'b_better' });
    expect(qa('compare-name').map((e) => e.textContent)).toEqual(['gemma.gguf', 'smol.gguf']);
    expect(q('vote-result')?.textContent).toContain('B is better');
    expect(qa('compare-promote').length).toBe(2);

    // The diff comes from the core, and model text is never parsed as markup.
    (q('diff-toggle') as HTMLInputElement).click();
    await settle();
    expect(diffArgs).toMatchObject({ answerA: 'Paris ', answerB: 'It is Paris.' });
    const a = q('diff-answer')!;
    expect(a.textContent).toContain('<img src=x onerror="window.__pwned=1">');
    expect(a.querySelector('img')).toBeNull();
    expect(a.querySelector('.del')?.textContent).toContain('<img');
    const b = qa('diff-answer')[1];
    expect(b.querySelector('b')).toBeNull();
    expect(b.querySelector('.ins')?.textContent).toBe('<b>bold</b>');
    expect((window as unknown as Record<string, unknown>).__pwned).toBeUndefined();
    expect(cs.run?.done).toBe(true);
  });

  it('keeps the summary and columns when the core reports an error in one column', async () => {
    let channel: Channel<CompareOutput> | null = null;
    mockIPC((cmd, raw) => {
      if (cmd === 'list_models') return models;
      if (cmd === 'list_conversations') return [];
      if (cmd === 'start_compare') {
        channel = (raw as Record<string, unknown>).onEvent as Channel<CompareOutput>;
        return { handle: 'h', run_id: null, conversation_id: null, user_message_id: null };
      }
      return null;
    });
    await start('compare');
    setValue(q('compare-prompt')!, 'hi');
    q('compare-send')!.click();
    await settle();
    channel!.onmessage({ column: 1, type: 'error', code: 'worker_crashed', message: 'the worker was killed' });
    channel!.onmessage({ column: 0, type: 'token', text: 'Hello' });
    await settle();
    expect(qa('compare-column')[1].dataset.phase).toBe('error');
    expect(qa('compare-column')[1].textContent).toContain('the worker was killed');
    expect(qa('compare-column')[0].textContent).toContain('Hello');
  });
});

describe('Leaderboard screen', () => {
  it('lists rows with Elo and Bradley–Terry CI and filters by tag', async () => {
    const tags: unknown[] = [];
    mockIPC((cmd, raw) => {
      if (cmd === 'list_models') return models;
      if (cmd === 'list_conversations') return [];
      if (cmd === 'leaderboard') {
        const tag = (raw as Record<string, unknown>).tag;
        tags.push(tag);
        return {
          tag, votes: 3, games: 3, regularized: true,
          rows: [
            { rank: 1, model_id: 'aa', name: 'smol.gguf', votes: 3, wins: 2, losses: 1, ties: 0, both_bad: 0, elo: 1015.6, bt_score: 1040.2, bt_ci_low: 950.1, bt_ci_high: 1130.3, bt_strength: 1 },
            { rank: 2, model_id: 'bb', name: '<i>gemma</i>', votes: 3, wins: 1, losses: 2, ties: 0, both_bad: 0, elo: 984.4, bt_score: 959.8, bt_ci_low: 870, bt_ci_high: 1049.9, bt_strength: 1 },
          ].slice(0, tag ? 1 : 2),
        };
      }
      return null;
    });
    await start('leaderboard');
    const rows = qa('leaderboard-row');
    expect(rows.length).toBe(2);
    expect(rows[0].textContent).toContain('smol.gguf');
    expect(rows[0].textContent).toContain('1016');
    expect(rows[0].textContent).toContain('1040 (950 – 1130)');
    expect(rows[0].textContent).toContain('2 / 0 / 1');
    expect(rows[1].querySelector('i')).toBeNull();
    setValue(q('leaderboard-tag')!, 'math');
    q('leaderboard-tag')!.dispatchEvent(new Event('change', { bubbles: true }));
    await settle();
    expect(tags).toEqual([null, 'math']);
    expect(qa('leaderboard-row').length).toBe(1);
  });
});

describe('Models screen', () => {
  it('shows fit badges, the broken file with its error, and download progress with cancel', async () => {
    let progress: Channel<DownloadProgress> | null = null;
    let rejectDownload: ((e: unknown) => void) | null = null;
    const calls: string[] = [];
    mockIPC((cmd, raw) => {
      const args = raw as Record<string, unknown>;
      calls.push(cmd);
      switch (cmd) {
        case 'list_models':
          return models;
        case 'list_conversations':
          return [];
        case 'model_details': {
          const m = models.find((x) => x.id === args.modelId)!;
          if (m.error) return { model: m, fit: null, fit_error: { code: 'model_not_gguf', message: m.error }, parts: [], tags: [] };
          const fit = args.nCtx === 32768 ? 'wont_fit' : m.id === 's' ? 'fits' : 'tight';
          return { model: m, file_name: m.name, folder: '/m', parts: [m.path], sha256: null, tags: [], general_name: null, license: null, layer_count: 30, embedding_length: 576, head_count: 9, head_count_kv: 3, gguf_version: 3, split_count: 1, weights_bytes: 1e8, fit: { n_ctx: args.nCtx, weights_bytes: 1e8, kv_cache_bytes: 1e7, compute_bytes: 1e7, compute_reserved_bytes: 1e7, overhead_bytes: 1e7, total_bytes: 1.3e8, available_bytes: 1e9, fit, notes: [] }, fit_error: null };
        }
        case 'download_model':
          progress = args.onProgress as Channel<DownloadProgress>;
          expect(args).toMatchObject({ url: 'https://example.org/tiny.gguf', sha256: null });
          return new Promise((_, reject) => (rejectDownload = reject));
        case 'cancel_download':
          expect(args).toEqual({ downloadId: 'dl-1' });
          rejectDownload?.({ code: 'download_cancelled', message: 'download cancelled (partial file kept for resume: tiny.gguf.part)' });
          return null;
        default:
          return null;
      }
    });
    await start('models');
    const rows = qa('models-row');
    expect(rows.length).toBe(3);
    expect(qa('fit-badge').map((b) => b.dataset.fit)).toEqual(['fits', 'tight', 'unknown']);
    expect(qa('fit-badge').map((b) => b.textContent)).toEqual(['fits', 'tight', '—']);
    expect(rows[2].querySelector('[data-testid="model-error"]')?.textContent).toBe('truncated file');
    setValue(q('fit-context')!, '32768', 'change');
    await settle();
    expect(qa('fit-badge').slice(0, 2).map((b) => b.textContent)).toEqual(["won't fit", "won't fit"]);

    setValue(q('download-url')!, 'https://example.org/tiny.gguf');
    q('download-start')!.click();
    await settle();
    progress!.onmessage({ download_id: 'dl-1', bytes_done: 0, total: null, bytes_per_sec: 0, eta_secs: null, resumed_from: 0, attempt: 0, done: false });
    progress!.onmessage({ download_id: 'dl-1', bytes_done: 50 * 1024 ** 2, total: 100 * 1024 ** 2, bytes_per_sec: 10 * 1024 ** 2, eta_secs: 5, resumed_from: 0, attempt: 0, done: false });
    await settle();
    const bar = q('download-progress')!;
    expect(bar.getAttribute('aria-valuenow')).toBe('50');
    expect(bar.textContent).toContain('50.0 MB of 100 MB');
    expect(bar.textContent).toContain('10.0 MB/s');
    expect(bar.textContent).toContain('5.0 s left');
    q('download-cancel')!.click();
    await settle();
    expect(q('download-progress')).toBeNull();
    expect(document.body.textContent).toContain('Download cancelled');
    expect(calls).toContain('cancel_download');
  });

  it('deletes only after confirming', async () => {
    const removed: unknown[] = [];
    mockIPC((cmd, raw) => {
      if (cmd === 'list_models') return models;
      if (cmd === 'list_conversations') return [];
      if (cmd === 'remove_model') removed.push((raw as Record<string, unknown>).modelId);
      if (cmd === 'model_details') return Promise.reject({ code: 'x', message: 'x' });
      return null;
    });
    await start('models');
    qa('model-delete')[0].click();
    await settle();
    expect(removed).toEqual([]);
    q('model-delete-confirm')!.click();
    await settle();
    expect(removed).toEqual(['s']);
  });
});
