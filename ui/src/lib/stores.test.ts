// What the domain stores do to each other. Each hand-over crosses a constructor or the
// wiring in stores.ts, where a slip breaks no type and no single store's own behaviour.
import { describe, expect, it } from 'vitest';
import { mockIPC } from '@tauri-apps/api/mocks';
import { emit } from '@tauri-apps/api/event';
import type { Channel } from '@tauri-apps/api/core';
import { AppStatusStore } from './appStatusStore.svelte';
import { ChatStore } from './chatStore.svelte';
import { HistoryStore } from './historyStore.svelte';
import { ModelStore } from './modelStore.svelte';
import { NavigationStore } from './navigationStore.svelte';
import { SettingsStore } from './settingsStore.svelte';
import { defaultSettings } from './settings';
import type { ChatEvent, ChatSettings, ConversationView, LoadedModel, ModelInfo } from './types';

const model: ModelInfo = {
  id: 'm1', name: 'Tiny', path: '/m/tiny.gguf', size_bytes: 1e9, architecture: 'qwen3', quantization: 'Q8_0',
  parameter_count: 6e8, context_length: 4096, has_chat_template: true, reasoning_format: null, error: null, gpu_layers: null,
};
const loaded: LoadedModel = {
  model_id: 'm1', name: 'Tiny', load_ms: 5, n_ctx: 2048, n_ctx_train: 4096, has_chat_template: true, template_name: 'chatml',
  reasoning_format: 'deepseek', thinking_off_available: true, thinking_off_reason: null, devices: '',
};
const usage = { prompt_tokens: 3, cached_prompt_tokens: 0, completion_tokens: 1, reasoning_tokens: 0, answer_tokens: 1 };
const metrics = {
  ttft_ms: 10, prompt_eval_ms: 5, prompt_tps: 100, gen_ms: 10, gen_tps: 100, wall_ms: 20, thinking_ms: 0, answer_ms: 10,
  threads: 2, peak_rss_bytes: 1e9, cpu_seconds: 0.1, energy_wh: 0.01, energy_thinking_wh: 0, energy_answer_wh: 0.01,
  energy_method: 'rapl', dropped_messages: 0, seed: 1, template: 'chatml', reasoning_format: 'deepseek', thinking: 'auto' as const,
  budget_cut_at: null, reasoning_cut_off: false, thoughts_dropped_tokens: 0, first_reasoning_ms: null, first_answer_ms: null,
  context_overflow: 'drop_oldest' as const,
  drafted_tokens: 0,
  accepted_tokens: 0,
};
const handle = { request_id: 'r1', conversation_id: 'c1', user_message_id: 'u1', assistant_message_id: 'a1' };

async function settle() {
  for (let i = 0; i < 4; i++) await new Promise((r) => setTimeout(r, 20));
}

/** Fresh stores wired as stores.ts wires them, with the history refresh counted. */
function build() {
  const status = new AppStatusStore();
  const navigation = new NavigationStore();
  const models = new ModelStore();
  const settings = new SettingsStore(models);
  let historyChanges = 0;
  const chat = new ChatStore({ models, settings, navigation, status, historyChanged: () => historyChanges++ });
  const history = new HistoryStore(status, chat);
  return { status, navigation, models, settings, chat, history, historyChanges: () => historyChanges };
}

describe('stores wired together', () => {
  it('renaming or deleting the open conversation changes the chat; failures go to the banner', async () => {
    let failDelete = true;
    mockIPC((cmd) => {
      if (cmd === 'delete_conversation' && failDelete) return Promise.reject({ code: 'db', message: 'locked' });
      return null;
    });
    const { status, chat, history } = build();
    chat.conversationId = 'c1';
    chat.title = 'Old';
    history.conversations = [
      { id: 'c1', title: 'Old', created_at: '', updated_at: '', pinned: false, message_count: 2, last_model: null },
    ];

    await history.rename('c1', '  New  ');
    expect(chat.title).toBe('New');
    expect(history.conversations[0].title).toBe('New');

    await history.remove('c1');
    expect(status.banner).toEqual({ kind: 'error', text: 'Delete failed: locked' });
    expect(chat.conversationId).toBe('c1');

    failDelete = false;
    await history.remove('c1');
    expect(history.conversations).toEqual([]);
    expect(chat.conversationId).toBeNull();
  });

  it('a send uses the settings store, clears the banner and refreshes the history when a conversation starts and when it ends', async () => {
    let channel: Channel<ChatEvent> | null = null;
    let sent: { settings: ChatSettings } | null = null;
    mockIPC((cmd, raw) => {
      const args = raw as Record<string, unknown>;
      if (cmd === 'start_chat') {
        channel = args.onEvent as Channel<ChatEvent>;
        sent = args.request as { settings: ChatSettings };
        return handle;
      }
      return Promise.reject({ code: 'not_found', message: 'no' });
    });
    const { status, models, settings, chat, historyChanges } = build();
    models.models = [model];
    models.loaded = loaded;
    settings.settings.system_prompt = 'Be brief.';
    status.showError('an old failure');

    expect(await chat.send('hi')).toBe(true);
    expect(status.banner).toBeNull();
    expect(sent!.settings.system_prompt).toBe('Be brief.');
    expect(chat.conversationId).toBe('c1');
    expect(historyChanges()).toBe(1);

    channel!.onmessage({ type: 'token', text: 'Hello' });
    channel!.onmessage({ type: 'done', stop_reason: 'eos', usage, metrics });
    await settle();
    expect(chat.streaming).toBe(false);
    expect(historyChanges()).toBe(2);
  });

  it('opening a saved conversation shows the chat screen and takes the settings it was saved with', async () => {
    const saved: ChatSettings = { ...defaultSettings(), n_ctx: 1024, system_prompt: 'Saved.' };
    const view: ConversationView = { id: 'c1', title: 'T', system_prompt: '', settings: saved, current_leaf_id: null, messages: [] };
    mockIPC((cmd) => (cmd === 'get_conversation' ? view : null));
    const { navigation, settings, chat } = build();
    navigation.view = 'compare';

    await chat.openConversation('c1');
    expect(navigation.view).toBe('chat');
    expect(settings.settings.n_ctx).toBe(1024);
    expect(settings.settings.system_prompt).toBe('Saved.');
  });

  it('saving the settings redoes the fit estimates only when the context size changed', async () => {
    const asked: number[] = [];
    mockIPC((cmd, raw) => {
      if (cmd !== 'model_details') return null;
      asked.push(Number((raw as Record<string, unknown>).nCtx));
      return { model, fit: null, fit_error: null };
    });
    const { models, settings } = build();
    models.models = [model];
    settings.settings.n_ctx = 4096;
    await models.refreshFits(4096);
    expect(asked).toEqual([4096]);

    settings.persist();
    await settle();
    expect(asked).toEqual([4096]);

    settings.settings.n_ctx = 8192;
    settings.persist();
    await settle();
    expect(asked).toEqual([4096, 8192]);
  });
});

describe('startApp', () => {
  it('a crashed worker unloads its model, says so in the banner and ends the answer in flight', async () => {
    mockIPC(
      (cmd) => {
        switch (cmd) {
          case 'list_models':
            return [model];
          case 'list_conversations':
            return [];
          case 'start_chat':
            return handle;
          case 'model_details':
            return { model, fit: null, fit_error: null };
          default:
            return null;
        }
      },
      { shouldMockEvents: true },
    );
    const { startApp, appStatusStore, chatStore, modelStore } = await import('./stores');
    await startApp();
    modelStore.loaded = loaded;
    await chatStore.send('hi');
    expect(chatStore.streaming).toBe(true);

    await emit('worker-crashed', { model_id: 'm1', message: 'signal 9' });
    await settle();
    expect(modelStore.loaded).toBeNull();
    expect(appStatusStore.banner?.text).toBe('The model worker stopped: signal 9. Load the model again to continue.');
    expect(chatStore.streaming).toBe(false);
    const answer = chatStore.messages.find((m) => m.role === 'assistant');
    expect(answer?.status).toBe('error');
    expect(answer?.error).toBe('signal 9 (worker_crashed)');
  });
});
