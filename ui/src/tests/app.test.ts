// Integration: the real App against a mocked IPC backend (mockIPC), driven like a user.
import { afterEach, describe, expect, it } from 'vitest';
import { flushSync, mount, unmount, tick } from 'svelte';
import { mockIPC } from '@tauri-apps/api/mocks';
import type { Channel } from '@tauri-apps/api/core';
import type { ChatEvent, ConversationView, ModelInfo } from '../lib/types';

const model: ModelInfo = {
  id: 'm1', name: 'Tiny Thinker', path: '/m/tiny.gguf', size_bytes: 1e9, architecture: 'qwen3',
  quantization: 'Q8_0', parameter_count: 6e8, context_length: 4096, has_chat_template: true,
  reasoning_format: 'deepseek', error: null, gpu_layers: null,
};

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

async function start() {
  const { default: App } = await import('../App.svelte');
  const { chatStore, historyStore, modelStore, searchStore } = await import('../lib/stores');
  // The stores are module singletons: reset what earlier tests left behind.
  chatStore.stream = null;
  chatStore.newChat();
  searchStore.query = '';
  searchStore.results = [];
  searchStore.includeReasoning = false;
  historyStore.conversations = [];
  historyStore.error = null;
  modelStore.loadError = null;
  modelStore.loading = null;
  modelStore.loaded = null;
  modelStore.selectedModelId = null;
  modelStore.fits = {};
  modelStore.pendingLoad = null;
  modelStore.models = [];
  modelStore.modelsError = null;
  const target = document.createElement('div');
  document.body.appendChild(target);
  app = mount(App, { target });
  await settle();
  return { chatStore, modelStore, q: (id: string) => document.querySelector(`[data-testid="${id}"]`) as HTMLElement | null, qa: (id: string) => Array.from(document.querySelectorAll(`[data-testid="${id}"]`)) as HTMLElement[] };
}

/** The IPC of a user with one model, which loads; `more` answers every other command. */
function withOneModel(more: (cmd: string, args: Record<string, unknown>) => unknown) {
  mockIPC((cmd, raw) => {
    switch (cmd) {
      case 'list_models':
        return [model];
      case 'list_conversations':
        return [];
      case 'load_model':
        return { model_id: 'm1', name: 'Tiny Thinker', load_ms: 5, n_ctx: 2048, n_ctx_train: 4096, has_chat_template: true, template_name: 'chatml', reasoning_format: 'deepseek' };
      default:
        return more(cmd, raw as Record<string, unknown>);
    }
  });
}

type Query = (id: string) => HTMLElement | null;

async function pickModel(q: Query) {
  const picker = q('model-picker') as HTMLSelectElement;
  picker.value = 'm1';
  picker.dispatchEvent(new Event('change', { bubbles: true }));
  await settle();
}

/** Keeps what `warm_prompt` was asked, in order, and answers as the core would. */
function recordWarm(warms: Array<Record<string, unknown>>, args: Record<string, unknown>) {
  warms.push({ ...(args.request as Record<string, unknown>), wholeTurn: args.wholeTurn });
  return { prompt_tokens: 9, cached_tokens: 0, decoded_tokens: 9, complete: true };
}

/** Types into the composer as an input event would. */
function typer(q: Query) {
  return (text: string) => {
    const prompt = q('prompt') as HTMLTextAreaElement;
    prompt.value = text;
    prompt.dispatchEvent(new Event('input', { bubbles: true }));
    flushSync();
  };
}

describe('App with mocked IPC', () => {
  it('tells a new user what to do when there is no model', async () => {
    mockIPC((cmd) => {
      if (cmd === 'list_models' || cmd === 'list_conversations') return [];
      if (cmd === 'app_info') return { version: '0', data_dir: '/d', models_dirs: ['/models'] };
      return null;
    });
    await start();
    expect(document.body.textContent).toContain('No model yet');
    expect(document.body.textContent).toContain('make models');
    expect(document.body.textContent).toContain('Open a GGUF file');
  });

  it('first start selects the only model, shows its fit, asks before loading what will not fit, then shows the loaded context', async () => {
    const loads: string[] = [];
    const wontFit = {
      n_ctx: 4096, weights_bytes: 0, kv_cache_bytes: 0, compute_bytes: 0, compute_reserved_bytes: 0, overhead_bytes: 0,
      total_bytes: 20 * 1024 ** 3, available_bytes: 8 * 1024 ** 3, fit: 'wont_fit', notes: [],
    };
    mockIPC((cmd, raw) => {
      const args = raw as Record<string, unknown>;
      switch (cmd) {
        case 'list_models':
          return [model];
        case 'list_conversations':
          return [];
        case 'model_details':
          expect(args).toEqual({ modelId: 'm1', nCtx: 4096 });
          return { model, fit: wontFit, fit_error: null };
        case 'load_model':
          loads.push(String(args.modelId));
          return { model_id: 'm1', name: 'Tiny Thinker', load_ms: 5, n_ctx: 2048, n_ctx_train: 4096, has_chat_template: true, template_name: 'chatml', reasoning_format: 'deepseek' };
        default:
          return null;
      }
    });
    const { q, qa, modelStore } = await start();
    expect(modelStore.selectedModelId).toBe('m1');
    expect(q('model-status')?.textContent).toBe('Starts when you send');
    expect(qa('model-option').map((o) => o.textContent)).toEqual(["Tiny Thinker · won't fit (20.0 GB)"]);

    const picker = q('model-picker') as HTMLSelectElement;
    picker.value = 'm1';
    picker.dispatchEvent(new Event('change', { bubbles: true }));
    await settle();
    expect(loads).toEqual([]);
    expect(q('fit-warning')?.textContent).toContain('needs about 20.0 GB at 4,096 tokens of context, 8.0 GB free');
    q('load-anyway')?.click();
    await settle();
    expect(loads).toEqual(['m1']);
    expect(q('fit-warning')).toBeNull();
    // The context the worker allocated, not the trained 4,096.
    expect(q('model-status')?.textContent).toBe('Loaded · ctx 2,048');
  });

  it('shows IPC failures in place instead of going blank', async () => {
    mockIPC((cmd) => {
      if (cmd === 'list_models') return Promise.reject({ code: 'io', message: 'models dir unreadable' });
      if (cmd === 'list_conversations') return Promise.reject({ code: 'db', message: 'history locked' });
      return null;
    });
    const { qa } = await start();
    const errors = qa('error').map((e) => e.textContent);
    expect(errors.some((t) => t?.includes('models dir unreadable'))).toBe(true);
    expect(errors.some((t) => t?.includes('history locked'))).toBe(true);
  });

  it('loads a model, streams thinking then answer, collapses thinking, shows cost line', async () => {
    let channel: Channel<ChatEvent> | null = null;
    let sentSettings: Record<string, unknown> | null = null;
    let conv: ConversationView | null = null;
    mockIPC((cmd, raw) => {
      const args = raw as Record<string, unknown>;
      switch (cmd) {
        case 'list_models':
          return [model];
        case 'list_conversations':
          return [];
        case 'load_model':
          (args.onProgress as Channel<{ fraction: number }>).onmessage({ fraction: 1 });
          return { model_id: 'm1', name: 'Tiny Thinker', load_ms: 5, n_ctx: 2048, n_ctx_train: 4096, has_chat_template: true, template_name: 'chatml', reasoning_format: 'deepseek' };
        case 'start_chat':
          channel = args.onEvent as Channel<ChatEvent>;
          sentSettings = (args.request as { settings: Record<string, unknown> }).settings;
          return { request_id: 'r1', conversation_id: 'c1', user_message_id: 'u1', assistant_message_id: 'a1' };
        case 'get_conversation':
          return conv ?? Promise.reject({ code: 'not_found', message: 'nope' });
        default:
          return null;
      }
    });
    const { q, qa, chatStore } = await start();
    const options = qa('model-option');
    expect(options.map((o) => o.textContent)).toEqual(['Tiny Thinker']);
    const picker = q('model-picker') as HTMLSelectElement;
    picker.value = 'm1';
    picker.dispatchEvent(new Event('change', { bubbles: true }));
    await settle();
    expect(q('model-status')?.textContent).toContain('Loaded');

    const prompt = q('prompt') as HTMLTextAreaElement;
    prompt.value = 'Why is the sky blue?';
    prompt.dispatchEvent(new Event('input', { bubbles: true }));
    flushSync();
    (q('send') as HTMLButtonElement).click();
    await settle();
    expect(q('message-user')?.textContent).toContain('Why is the sky blue?');
    expect(q('stop')).not.toBeNull();

    for (const w of ['Rayleigh ', 'scattering ', 'favours ', 'short ', 'wavelengths.']) channel!.onmessage({ type: 'reasoning', text: w });
    await settle();
    const thinking = q('thinking')!;
    expect(thinking.dataset.state).toBe('streaming');
    expect(thinking.textContent).toContain('Rayleigh scattering favours short wavelengths.');
    expect(q('thinking-summary')?.textContent).toMatch(/^Thinking… \d+ s$/);

    channel!.onmessage({ type: 'token', text: 'Because of ' });
    channel!.onmessage({ type: 'token', text: '**Rayleigh** scattering.' });
    await settle();
    expect(q('thinking')!.dataset.state).toBe('collapsed');
    expect(q('answer')?.querySelector('strong')?.textContent).toBe('Rayleigh');

    const metrics = {
      ttft_ms: 250, prompt_eval_ms: 200, prompt_tps: 100, gen_ms: 1000, gen_tps: 33.3, wall_ms: 1300,
      thinking_ms: 800, answer_ms: 500, threads: 4, peak_rss_bytes: 1e9, cpu_seconds: 4, energy_wh: 0.01,
      energy_thinking_wh: 0.006, energy_answer_wh: 0.004, energy_method: 'rapl', dropped_messages: 0, seed: 1,
      template: 'chatml', reasoning_format: 'deepseek', thinking: 'auto' as const, budget_cut_at: null,
      reasoning_cut_off: false, thoughts_dropped_tokens: 0, drafted_tokens: 530, accepted_tokens: 412,
      first_reasoning_ms: null, first_answer_ms: null, context_overflow: 'drop_oldest' as const,
    };
    const usage = { prompt_tokens: 10, cached_prompt_tokens: 0, completion_tokens: 7, reasoning_tokens: 5, answer_tokens: 2 };
    conv = {
      id: 'c1', title: 'Sky', system_prompt: '', settings: null, current_leaf_id: 'a1',
      messages: [
        { id: 'u1', parent_id: null, role: 'user', content: 'Why is the sky blue?', reasoning: null, status: 'complete', error: null, model_name: null, created_at: '2025-01-01T00:00:00Z', metrics: null, usage: null, stop_reason: null },
        { id: 'a1', parent_id: 'u1', role: 'assistant', content: 'Because of **Rayleigh** scattering.', reasoning: 'Rayleigh scattering favours short wavelengths.', status: 'complete', error: null, model_name: 'Tiny Thinker', created_at: '2025-01-01T00:00:01Z', metrics, usage, stop_reason: 'eos' },
      ],
    };
    channel!.onmessage({ type: 'done', stop_reason: 'eos', usage, metrics });
    await settle();
    expect(chatStore.streaming).toBe(false);
    expect(q('send')).not.toBeNull();
    const cost = q('cost-line')!.textContent!;
    expect(cost).toContain('TTFT');
    expect(cost).toContain('33.3 t/s');
    expect(cost).toContain('5 thinking + 2 answer');
    expect(cost).toContain('0.010 Wh');
    expect(cost).toContain('speculative: 412 of 530 drafted accepted');
    // The speculative setting travels with the request (default auto, no draft model).
    expect(sentSettings).toMatchObject({ speculative: 'auto', draft_model: null });
    expect(q('thinking-summary')?.textContent).toBe('Thought for 0.80 s · 5 tokens');
    // Still collapsed after the refetch (same key, no remount), and expandable.
    expect(q('thinking')!.dataset.state).toBe('collapsed');
    (q('thinking')!.querySelector('button') as HTMLButtonElement).click();
    flushSync();
    expect(q('thinking')!.dataset.state).toBe('expanded');
  });

  it('reads the message ahead as it is typed, one read at a time, and its whole turn when typing pauses; never while an answer streams', async () => {
    const warms: Array<Record<string, unknown>> = [];
    // Each read ends when the test says so, as a worker busy decoding would.
    const reading: Array<() => void> = [];
    let channel: Channel<ChatEvent> | null = null;
    withOneModel((cmd, args) => {
      if (cmd === 'warm_prompt') {
        const report = recordWarm(warms, args);
        return new Promise((resolve) => reading.push(() => resolve(report)));
      }
      if (cmd === 'start_chat') {
        channel = args.onEvent as Channel<ChatEvent>;
        return { request_id: 'r1', conversation_id: 'c1', user_message_id: 'u1', assistant_message_id: 'a1' };
      }
      return null;
    });
    const { q } = await start();
    const type = typer(q);
    const read = () => warms.map((w) => [w.content, w.wholeTurn]);
    const finishRead = async () => {
      reading.shift()!();
      await settle(5);
    };
    // Nothing is read before a model is loaded; once it is, the turn typed so far.
    type('Why');
    await settle(80);
    expect(warms).toEqual([]);
    await pickModel(q);
    await settle(80);
    expect(read()).toEqual([['Why', true]]);
    expect(warms[0]).toMatchObject({ conversation_id: null, parent_id: null, model_id: 'm1', regenerate_of: null, edit_of: null });

    // While a read is in flight, keystrokes wait; then only the latest text is read, at
    // once, without its turn's end.
    type('Why is');
    type('Why is the');
    type('Why is the sky blue? ');
    await settle(5);
    expect(read()).toHaveLength(1);
    await finishRead();
    expect(read()).toEqual([['Why', true], ['Why is the sky blue?', false]]);
    await finishRead();
    // Typing has paused: the whole turn is read.
    await settle(80);
    expect(read().slice(2)).toEqual([['Why is the sky blue?', true]]);
    await finishRead();
    // The same text again (a space added) is not read again, in part or whole.
    type('Why is the sky blue?  ');
    await settle(80);
    expect(warms).toHaveLength(3);
    // With nothing in flight, a keystroke is read at once, without waiting for a pause.
    type('Why is the sky blue? Why');
    await settle(5);
    expect(read().slice(3)).toEqual([['Why is the sky blue? Why', false]]);
    await finishRead();

    (q('send') as HTMLButtonElement).click();
    await settle();
    expect(channel).not.toBeNull();
    // Sending empties the box, which reads nothing; nor does typing while the answer streams.
    type('And at sunset');
    await settle(80);
    expect(warms).toHaveLength(4);
  });

  it('reads the conversation ahead while nothing is typed: once its model is loaded and when an answer has ended', async () => {
    const warms: Array<Record<string, unknown>> = [];
    let channel: Channel<ChatEvent> | null = null;
    let conv: ConversationView | null = null;
    withOneModel((cmd, args) => {
      if (cmd === 'warm_prompt') return recordWarm(warms, args);
      if (cmd === 'start_chat') {
        channel = args.onEvent as Channel<ChatEvent>;
        return { request_id: 'r1', conversation_id: 'c1', user_message_id: 'u1', assistant_message_id: 'a1' };
      }
      if (cmd === 'get_conversation') return conv ?? Promise.reject({ code: 'not_found', message: 'nope' });
      return null;
    });
    const { q, chatStore } = await start();
    const type = typer(q);
    await pickModel(q);
    await settle(80);
    // The new chat's system prompt and the user turn's header.
    expect(warms).toHaveLength(1);
    expect(warms[0]).toMatchObject({ content: '', conversation_id: null, parent_id: null, model_id: 'm1' });

    // Pasted and sent at once: the paste is read at once, before the send.
    type('Why is the sky blue?');
    (q('send') as HTMLButtonElement).click();
    await settle();
    expect(warms).toHaveLength(2);
    expect(warms[1]).toMatchObject({ content: 'Why is the sky blue?', conversation_id: null, parent_id: null });
    channel!.onmessage({ type: 'token', text: 'Rayleigh scattering.' });
    await settle(80);
    expect(warms).toHaveLength(2);

    conv = {
      id: 'c1', title: 'Sky', system_prompt: '', settings: null, current_leaf_id: 'a1',
      messages: [
        { id: 'u1', parent_id: null, role: 'user', content: 'Why is the sky blue?', reasoning: null, status: 'complete', error: null, model_name: null, created_at: '2025-01-01T00:00:00Z', metrics: null, usage: null, stop_reason: null },
        { id: 'a1', parent_id: 'u1', role: 'assistant', content: 'Rayleigh scattering.', reasoning: null, status: 'complete', error: null, model_name: 'Tiny Thinker', created_at: '2025-01-01T00:00:01Z', metrics: null, usage: null, stop_reason: 'eos' },
      ],
    };
    const usage = { prompt_tokens: 10, cached_prompt_tokens: 0, completion_tokens: 3, reasoning_tokens: 0, answer_tokens: 3 };
    channel!.onmessage({ type: 'done', stop_reason: 'eos', usage, metrics: null as never });
    await settle(80);
    expect(chatStore.streaming).toBe(false);
    // The answer has ended: the next turn's header is read, on the answer's branch.
    expect(warms).toHaveLength(3);
    expect(warms[2]).toMatchObject({ content: '', conversation_id: 'c1', parent_id: 'a1', model_id: 'm1' });
    await settle(80);
    expect(warms).toHaveLength(3);
  });

  it('reads a conversation ahead once it is opened, not one only passed through', async () => {
    const warms: Array<Record<string, unknown>> = [];
    const conversation = (id: string): ConversationView => ({
      id, title: id, system_prompt: '', settings: null, current_leaf_id: `${id}-a`,
      messages: [
        { id: `${id}-u`, parent_id: null, role: 'user', content: 'Hi', reasoning: null, status: 'complete', error: null, model_name: null, created_at: '2025-01-01T00:00:00Z', metrics: null, usage: null, stop_reason: null },
        { id: `${id}-a`, parent_id: `${id}-u`, role: 'assistant', content: 'Hello.', reasoning: null, status: 'complete', error: null, model_name: 'Tiny Thinker', created_at: '2025-01-01T00:00:01Z', metrics: null, usage: null, stop_reason: 'eos' },
      ],
    });
    withOneModel((cmd, args) => {
      if (cmd === 'warm_prompt') return recordWarm(warms, args);
      if (cmd === 'get_conversation') return conversation(args.id as string);
      return null;
    });
    const { q, chatStore } = await start();
    await pickModel(q);
    await settle(80);
    expect(warms.map((w) => w.conversation_id)).toEqual([null]);
    // Passed through on the way to another: only the one the user stays on is read.
    await chatStore.openConversation('c1');
    await chatStore.openConversation('c2');
    await settle(80);
    expect(warms.map((w) => [w.conversation_id, w.parent_id, w.content])).toEqual([[null, null, ''], ['c2', 'c2-a', '']]);
  });

  it('reads nothing ahead when the user switched it off in the settings', async () => {
    let warms = 0;
    withOneModel((cmd) => {
      if (cmd !== 'warm_prompt') return null;
      warms++;
      return { prompt_tokens: 1, cached_tokens: 0, decoded_tokens: 1, complete: true };
    });
    const { q } = await start();
    const type = typer(q);
    (q('settings-toggle') as HTMLButtonElement).click();
    await settle();
    const box = q('setting-read-ahead') as HTMLInputElement;
    expect(box.checked).toBe(true);
    box.click();
    flushSync();
    expect(localStorage.getItem('conclave.readAhead')).toBe('off');
    // Neither the loaded model's new chat nor the typed text is read.
    await pickModel(q);
    await settle(80);
    expect(warms).toBe(0);
    type('Why is the sky blue?');
    await settle(80);
    expect(warms).toBe(0);
    box.click();
    flushSync();
    type('Why is the sea blue?');
    await settle(80);
    // The text as typed, then its whole turn once typing paused.
    expect(warms).toBe(2);
  });

  it('keeps the thinking block open when the user is reading it', async () => {
    let channel: Channel<ChatEvent> | null = null;
    mockIPC((cmd, raw) => {
      const args = raw as Record<string, unknown>;
      if (cmd === 'list_models') return [model];
      if (cmd === 'list_conversations') return [];
      if (cmd === 'load_model') return { model_id: 'm1', name: 'Tiny Thinker', load_ms: 5, n_ctx: 2048, n_ctx_train: 4096, has_chat_template: true, template_name: 'chatml', reasoning_format: 'deepseek' };
      if (cmd === 'start_chat') {
        channel = args.onEvent as Channel<ChatEvent>;
        return { request_id: 'r1', conversation_id: 'c1', user_message_id: 'u1', assistant_message_id: 'a1' };
      }
      return null;
    });
    const { q, chatStore, modelStore } = await start();
    await modelStore.loadModel('m1');
    void chatStore.send('hi');
    await settle();
    channel!.onmessage({ type: 'reasoning', text: 'hmm' });
    await settle();
    q('thinking')!.querySelector('[role="region"]')!.dispatchEvent(new Event('pointerenter'));
    flushSync();
    channel!.onmessage({ type: 'token', text: 'Hello' });
    await settle();
    expect(q('thinking')!.dataset.state).toBe('expanded');
  });

  it('renders search snippets with <mark> as text, never HTML', async () => {
    mockIPC((cmd, raw) => {
      const args = raw as Record<string, unknown>;
      if (cmd === 'list_models' || cmd === 'list_conversations') return [];
      if (cmd === 'search') {
        expect(args).toEqual({ query: 'mutex', includeReasoning: false });
        return [{ conversation_id: 'c1', message_id: 'm1', title: 'Locks', role: 'assistant', snippet: 'a \u0001mutex\u0002 <img src=x onerror=alert(1)>' }];
      }
      return null;
    });
    const { q } = await start();
    const input = q('search') as HTMLInputElement;
    input.value = 'mutex';
    input.dispatchEvent(new Event('input', { bubbles: true }));
    input.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
    await settle();
    const hit = q('search-result')!;
    expect(hit.querySelector('mark')?.textContent).toBe('mutex');
    expect(hit.querySelector('img')).toBeNull();
    expect(hit.textContent).toContain('<img src=x onerror=alert(1)>');
  });

  it('branch navigation shows 2/3 and switches the leaf', async () => {
    const mk = (id: string, parent: string | null, role: 'user' | 'assistant', t: number, content: string) => ({
      id, parent_id: parent, role, content, reasoning: null, status: 'complete' as const, error: null,
      model_name: role === 'assistant' ? 'Tiny Thinker' : null, created_at: `2025-01-01T00:00:0${t}Z`, metrics: null, usage: null, stop_reason: null,
    });
    const leafCalls: unknown[] = [];
    mockIPC((cmd, raw) => {
      if (cmd === 'list_models') return [model];
      if (cmd === 'list_conversations') return [{ id: 'c1', title: 'T', created_at: '2025-01-01T00:00:00Z', updated_at: '2025-01-01T00:00:00Z', pinned: false, message_count: 4, last_model: null }];
      if (cmd === 'get_conversation')
        return { id: 'c1', title: 'T', system_prompt: '', settings: null, current_leaf_id: 'a2', messages: [mk('u1', null, 'user', 1, 'q'), mk('a1', 'u1', 'assistant', 2, 'first'), mk('a2', 'u1', 'assistant', 3, 'second'), mk('a3', 'u1', 'assistant', 4, 'third')] };
      if (cmd === 'set_current_leaf') leafCalls.push(raw);
      return null;
    });
    const { q } = await start();
    (q('conversation-item') as HTMLButtonElement).click();
    await settle();
    expect(q('branch-pos')?.textContent).toBe('2/3');
    expect(q('answer')?.textContent?.trim()).toBe('second');
    (q('branch-next') as HTMLButtonElement).click();
    await settle();
    expect(q('branch-pos')?.textContent).toBe('3/3');
    expect(q('answer')?.textContent?.trim()).toBe('third');
    expect(leafCalls).toEqual([{ conversationId: 'c1', messageId: 'a3' }]);
    expect((q('branch-next') as HTMLButtonElement).disabled).toBe(true);
  });
});
