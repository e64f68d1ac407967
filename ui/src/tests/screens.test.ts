// The Compare, Leaderboard and Models screens of the real App against a mocked backend.
import { afterEach, describe, expect, it } from 'vitest';
import { flushSync, mount, tick, unmount } from 'svelte';
import { mockIPC } from '@tauri-apps/api/mocks';
import type { Channel } from '@tauri-apps/api/core';
import type { ChatSettings, CompareOutput, DownloadProgress, PartialDownload, PlacementEstimate } from '../lib/types';
import { library } from './fixtures';

const models = library();

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
  const { modelStore, navigationStore } = await import('../lib/stores');
  const { compareStore } = await import('../lib/compareStore.svelte');
  navigationStore.view = 'chat';
  modelStore.models = [];
  modelStore.modelsLoaded = false;
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
  return { cs: compareStore };
}

function setValue(el: HTMLElement, value: string, ev = 'input') {
  (el as HTMLInputElement).value = value;
  el.dispatchEvent(new Event(ev, { bubbles: true }));
  flushSync();
}

const summary = (blind: boolean): CompareOutput => ({
  type: 'summary', run_id: 'r1', blind, sequential: false, reason: null, fastest: 1, cheapest: 0, generation_seconds: 2, aggregate_tokens_per_second: 50,
  columns: [0, 1].map((i) => ({ column: i, label: blind ? `Model ${'AB'[i]}` : ['gemma', 'smol'][i], model: blind ? null : ['gemma.gguf', 'smol.gguf'][i], status: 'done' as const, error: null, stop_reason: 'eos' as const, ttft_ms: 120, tokens_per_second: [20, 30][i], thinking_tokens: 0, answer_tokens: 5, completion_tokens: 5, seconds: 1, energy_wh: [0.001, 0.004][i], energy_method: 'rapl', threads: 2, drafted_tokens: [0, 40][i], accepted_tokens: [0, 31][i], message_id: `m${i}` })),
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

    // Column B gets its own speculative mode and draft model (its own worker in the core).
    qa('column-settings-toggle')[1].click();
    await settle();
    setValue(q('column-temperature')!, '0', 'change');
    setValue(q('column-speculative')!, 'draft', 'change');
    // Any model of the library may draft (not the broken one).
    const drafts = Array.from((q('column-draft-model') as HTMLSelectElement).options).map((o) => o.textContent);
    expect(drafts).toEqual(['None', 'smol', 'gemma']);
    setValue(q('column-draft-model')!, '/m/smol.gguf', 'change');
    expect((q('column-speculative') as HTMLSelectElement).value).toBe('draft');
    expect(document.body.textContent).toContain('draft smol');
    (q('column-settings')!.querySelector('button') as HTMLButtonElement).click();
    await settle();

    (q('compare-blind') as HTMLInputElement).click();
    setValue(q('compare-prompt')!, 'Capital of France?');
    q('compare-send')!.click();
    await settle();
    expect(sent).toMatchObject({ prompt: 'Capital of France?', options: { blind: true } });
    expect((sent!.columns as { model_id: string }[]).map((c) => c.model_id)).toEqual(['s', 'g']);
    const colSettings = (sent!.columns as { settings: ChatSettings }[]).map((c) => c.settings);
    expect(colSettings[1]).toMatchObject({ speculative: 'draft', draft_model: '/m/smol.gguf', sampling: { temperature: 0 } });
    expect(colSettings[0].draft_model).toBeNull();
    expect(colSettings[0].speculative).toBe('auto');

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
    // What speculation bought, in the column that used it only.
    expect(qa('compare-speculative').length).toBe(1);
    expect(qa('compare-figures')[1].textContent).toContain('speculative: 31 of 40 drafted accepted');
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

  it('shows where the layers go, RAM apart from VRAM, and follows the GPU layers setting', async () => {
    const GB = 1024 ** 3;
    const MB = 1024 ** 2;
    const place = (p: Partial<PlacementEstimate>): PlacementEstimate => ({
      layer_count: 30, gpu_layers_setting: { mode: 'auto' }, gpu_layers: 0, layers_on_gpu: 0, output_on_gpu: false, devices: [], has_gpu: false,
      ram_weights_bytes: 92 * MB, ram_kv_cache_bytes: 45 * MB, ram_compute_bytes: 13 * MB, ram_overhead_bytes: 30 * MB, ram_bytes: 180 * MB,
      ram_available_bytes: 6 * GB, ram_fit: 'fits', vram_bytes: 0, vram_fit: null, rpc_servers: [], summary: 'ignored by the UI', notes: [], ...p,
    });
    const cuda = (layers: number, output: boolean, vram: number) => ({
      name: 'CUDA0', description: 'NVIDIA GeForce RTX 4060', free_bytes: 5 * GB, total_bytes: 8 * GB, layers, output,
      weights_bytes: vram, kv_cache_bytes: 0, compute_bytes: 0, vram_bytes: vram, fit: 'fits' as const,
    });
    let gemmaLayers: number | null = null;
    const setCalls: unknown[] = [];
    mockIPC((cmd, raw) => {
      const args = raw as Record<string, unknown>;
      switch (cmd) {
        case 'list_models':
          return models.map((m) => (m.id === 'g' ? { ...m, gpu_layers: gemmaLayers } : m));
        case 'list_conversations':
        case 'partial_downloads':
          return [];
        case 'set_model_gpu_layers':
          setCalls.push(args);
          gemmaLayers = args.layers as number | null;
          return null;
        case 'model_details': {
          const m = models.find((x) => x.id === args.modelId)!;
          if (m.error) return { model: m, fit: null, fit_error: { code: 'model_not_gguf', message: m.error }, parts: [], tags: [], placement: null, placement_error: null };
          const placement =
            m.id === 's'
              ? place({})
              : gemmaLayers === 0
                ? place({ layer_count: 28, has_gpu: true, gpu_layers_setting: { mode: 'count', layers: 0 }, devices: [cuda(0, false, 0)], ram_bytes: 4.6 * GB })
                : place({
                    layer_count: 28, has_gpu: true, gpu_layers: 24, layers_on_gpu: 23, output_on_gpu: true, devices: [cuda(23, true, 3.4 * GB)],
                    ram_bytes: 1.2 * GB, vram_bytes: 3.4 * GB, vram_fit: 'fits', rpc_servers: ['10.0.0.2:50052'],
                  });
          return { model: { ...m, gpu_layers: m.id === 'g' ? gemmaLayers : null }, file_name: m.name, folder: '/m', parts: [m.path], sha256: null, tags: [], general_name: null, license: null, layer_count: placement.layer_count, embedding_length: 576, head_count: 9, head_count_kv: 3, gguf_version: 3, split_count: 1, weights_bytes: 1e8, fit: { n_ctx: args.nCtx, weights_bytes: 1e8, kv_cache_bytes: 1e7, compute_bytes: 1e7, compute_reserved_bytes: 1e7, overhead_bytes: 1e7, total_bytes: 1.3e8, available_bytes: 1e9, fit: 'fits', notes: [] }, fit_error: null, placement, placement_error: null };
        }
        default:
          return null;
      }
    });
    await start('models');
    const row = (id: string) => qa('models-row').find((r) => r.dataset.model === id)!;

    row('s').click();
    await settle();
    expect(q('model-placement')!.textContent).toBe('RAM 180 MB · no GPU: all 30 layers on the CPU');
    expect(q('placement-ram-fit')!.textContent).toBe('fits');
    expect(qa('placement-device')).toEqual([]);

    row('g').click();
    await settle();
    expect(q('model-placement')!.textContent).toBe(
      'RAM 1.2 GB · VRAM 3.4 GB (CUDA0: 23/28 layers + output) · remote devices 10.0.0.2:50052: their share is decided at load',
    );
    expect(qa('placement-device').map((d) => d.textContent?.replace(/\s+/g, ' ').trim())).toEqual(['3.4 GB of 5.0 GB free · 23/28 layers + output fits']);

    setValue(q('model-gpu-layers')!, '0', 'change');
    await settle();
    expect(setCalls).toEqual([{ modelId: 'g', layers: 0 }]);
    expect(q('model-placement')!.textContent).toBe('RAM 4.6 GB · GPU layers set to 0: all 28 layers on the CPU');
  });

  it('lists unfinished downloads, resumes one with progress and deletes another after confirming', async () => {
    const partial = (file_name: string, p: Partial<PartialDownload> = {}): PartialDownload => ({
      file_name, url: `https://huggingface.co/org/repo/resolve/main/${file_name}`, bytes_done: 40 * 1024 ** 2, total: 160 * 1024 ** 2,
      has_sha256: false, in_progress: false, modified_secs: 1, ...p,
    });
    let partials = [partial('big.gguf', { has_sha256: true }), partial('old.gguf', { url: null, total: null }), partial('busy.gguf', { in_progress: true })];
    let progress: Channel<DownloadProgress> | null = null;
    let finish: ((r: unknown) => void) | null = null;
    const calls: [string, unknown][] = [];
    mockIPC((cmd, raw) => {
      const args = raw as Record<string, unknown>;
      calls.push([cmd, args]);
      switch (cmd) {
        case 'list_models':
          return models;
        case 'list_conversations':
          return [];
        case 'partial_downloads':
          return partials;
        case 'resume_download':
          progress = args.onProgress as Channel<DownloadProgress>;
          return new Promise((resolve) => (finish = resolve));
        case 'delete_partial_download':
          partials = partials.filter((p) => p.file_name !== args.fileName);
          return null;
        case 'model_details':
          return Promise.reject({ code: 'x', message: 'x' });
        default:
          return null;
      }
    });
    await start('models');
    const rows = qa('partial-download');
    expect(rows.map((r) => r.dataset.name)).toEqual(['big.gguf', 'old.gguf', 'busy.gguf']);
    const info = qa('partial-info').map((i) => i.textContent);
    expect(info[0]).toContain('40.0 MB of 160 MB (25%)');
    expect(info[0]).toContain('from huggingface.co');
    expect(info[0]).toContain('your sha256');
    expect(info[1]).toContain('address was not recorded');
    expect(info[2]).toContain('downloading now');
    // No address: nothing to resume from. Being written: neither resume nor delete.
    expect((rows[1].querySelector('[data-testid="partial-resume"]') as HTMLButtonElement).disabled).toBe(true);
    expect(rows[2].querySelector('[data-testid="partial-resume"]')).toBeNull();
    expect(rows[2].querySelector('[data-testid="partial-delete"]')).toBeNull();

    (rows[0].querySelector('[data-testid="partial-resume"]') as HTMLElement).click();
    await settle();
    expect(calls.find(([c]) => c === 'resume_download')?.[1]).toMatchObject({ fileName: 'big.gguf' });
    progress!.onmessage({ download_id: 'dl-1', bytes_done: 120 * 1024 ** 2, total: 160 * 1024 ** 2, bytes_per_sec: 10 * 1024 ** 2, eta_secs: 4, resumed_from: 40 * 1024 ** 2, attempt: 0, done: false });
    await settle();
    expect(q('download-progress')!.getAttribute('aria-valuenow')).toBe('75');
    // One download at a time: the other rows cannot start another.
    expect(qa('partial-resume').every((b) => (b as HTMLButtonElement).disabled)).toBe(true);
    partials = partials.filter((p) => p.file_name !== 'big.gguf');
    finish!({ download_id: 'dl-1', path: '/m/big.gguf', sha256: 'a'.repeat(64), size: 160 * 1024 ** 2, sha256_source: 'user', resumed: true, model: null });
    await settle();
    expect(document.body.textContent).toContain('Downloaded big.gguf');
    expect(document.body.textContent).toContain('verified against yours');
    expect(qa('partial-download').map((r) => r.dataset.name)).toEqual(['old.gguf', 'busy.gguf']);

    (qa('partial-delete')[0] as HTMLElement).click();
    await settle();
    expect(calls.some(([c]) => c === 'delete_partial_download')).toBe(false);
    q('partial-delete-confirm')!.click();
    await settle();
    expect(calls.find(([c]) => c === 'delete_partial_download')?.[1]).toEqual({ fileName: 'old.gguf' });
    expect(qa('partial-download').map((r) => r.dataset.name)).toEqual(['busy.gguf']);
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
