import { describe, expect, it } from 'vitest';
import { mockIPC } from '@tauri-apps/api/mocks';
import { Channel } from '@tauri-apps/api/core';
import * as api from './api';
import type { ChatEvent, ChatRequest } from './types';
import { defaultSettings } from './settings';

type Call = { cmd: string; args: Record<string, unknown> };

function record(reply: (cmd: string, args: Record<string, unknown>) => unknown = () => null) {
  const calls: Call[] = [];
  mockIPC((cmd, args) => {
    const a = (args ?? {}) as Record<string, unknown>;
    calls.push({ cmd, args: a });
    return reply(cmd, a);
  });
  return calls;
}

describe('api wrappers send the exact command names and argument names', () => {
  it('simple commands', async () => {
    const calls = record();
    await api.listModels();
    await api.openModelFile('/m/a.gguf');
    await api.cancel('req-1');
    await api.listConversations(50, '2025-01-01T00:00:00Z');
    await api.getConversation('c1');
    await api.setCurrentLeaf('c1', 'm9');
    await api.deleteMessage('m2');
    await api.deleteConversation('c2');
    await api.renameConversation('c1', 'New title');
    await api.search('mutex', true);
    await api.exportConversation('c1', 'md');
    await api.appInfo();
    expect(calls).toEqual([
      { cmd: 'list_models', args: {} },
      { cmd: 'open_model_file', args: { path: '/m/a.gguf' } },
      { cmd: 'cancel', args: { requestId: 'req-1' } },
      { cmd: 'list_conversations', args: { limit: 50, before: '2025-01-01T00:00:00Z' } },
      { cmd: 'get_conversation', args: { id: 'c1' } },
      { cmd: 'set_current_leaf', args: { conversationId: 'c1', messageId: 'm9' } },
      { cmd: 'delete_message', args: { id: 'm2' } },
      { cmd: 'delete_conversation', args: { id: 'c2' } },
      { cmd: 'rename_conversation', args: { id: 'c1', title: 'New title' } },
      { cmd: 'search', args: { query: 'mutex', includeReasoning: true } },
      { cmd: 'export_conversation', args: { id: 'c1', format: 'md' } },
      { cmd: 'app_info', args: {} },
    ]);
  });

  it('list_conversations sends before: null for the first page', async () => {
    const calls = record(() => []);
    await api.listConversations(20);
    expect(calls[0].args).toEqual({ limit: 20, before: null });
  });

  it('load_model passes modelId and a Channel that reports progress', async () => {
    const seen: number[] = [];
    const calls = record((_cmd, args) => {
      const ch = args.onProgress as Channel<{ fraction: number }>;
      ch.onmessage({ fraction: 0.5 });
      ch.onmessage({ fraction: 1 });
      return { model_id: args.modelId, name: 'M', load_ms: 10, n_ctx: 2048, n_ctx_train: 4096, has_chat_template: true, template_name: 'chatml', reasoning_format: 'none' };
    });
    const lm = await api.loadModel('qwen', (p) => seen.push(p.fraction));
    expect(calls[0].cmd).toBe('load_model');
    expect(Object.keys(calls[0].args).sort()).toEqual(['modelId', 'onProgress']);
    expect(calls[0].args.onProgress).toBeInstanceOf(Channel);
    expect(seen).toEqual([0.5, 1]);
    expect(lm.model_id).toBe('qwen');
  });

  it('start_chat passes request (snake_case inside) and onEvent Channel', async () => {
    const events: ChatEvent[] = [];
    const calls = record((_cmd, args) => {
      const ch = args.onEvent as Channel<ChatEvent>;
      ch.onmessage({ type: 'token', text: 'hi' });
      return { request_id: 'r1', conversation_id: 'c1', user_message_id: 'u1', assistant_message_id: 'a1' };
    });
    const request: ChatRequest = {
      conversation_id: null,
      parent_id: null,
      content: 'hello',
      model_id: 'qwen',
      settings: defaultSettings(),
      regenerate_of: null,
      edit_of: null,
    };
    const h = await api.startChat(request, (e) => events.push(e));
    expect(calls[0].cmd).toBe('start_chat');
    expect(Object.keys(calls[0].args).sort()).toEqual(['onEvent', 'request']);
    const sent = calls[0].args.request as ChatRequest;
    expect(Object.keys(sent).sort()).toEqual(
      ['content', 'conversation_id', 'edit_of', 'model_id', 'parent_id', 'regenerate_of', 'settings'].sort(),
    );
    expect(Object.keys(sent.settings).sort()).toEqual(
      ['context_overflow', 'draft_model', 'keep_thoughts', 'n_ctx', 'sampling', 'speculative', 'system_prompt', 'template', 'think', 'think_budget', 'threads'].sort(),
    );
    expect(sent.settings.sampling).toHaveProperty('max_tokens', 512);
    expect(sent.settings.sampling).toHaveProperty('seed', null);
    expect(events).toEqual([{ type: 'token', text: 'hi' }]);
    expect(h.assistant_message_id).toBe('a1');
  });
});

describe('errors always come back as {code, message}', () => {
  it('passes through a structured rejection', async () => {
    record(() => Promise.reject({ code: 'not_found', message: 'no such model' }));
    await expect(api.listModels()).rejects.toEqual({ code: 'not_found', message: 'no such model' });
  });

  it('wraps a bare string rejection', async () => {
    record(() => Promise.reject('engine exploded'));
    await expect(api.getConversation('x')).rejects.toEqual({ code: 'unknown', message: 'engine exploded' });
  });

  it('toApiError handles Error, JSON strings, odd values', () => {
    expect(api.toApiError(new Error('boom'))).toEqual({ code: 'internal', message: 'boom' });
    expect(api.toApiError('{"code":"busy","message":"model busy"}')).toEqual({ code: 'busy', message: 'model busy' });
    expect(api.toApiError(undefined)).toEqual({ code: 'unknown', message: 'Unknown error' });
    expect(api.toApiError(42)).toEqual({ code: 'unknown', message: '42' });
    expect(api.toApiError({ message: 'only message' })).toEqual({ code: 'unknown', message: 'only message' });
    expect(api.toApiError({ weird: true })).toEqual({ code: 'unknown', message: '{"weird":true}' });
  });
});
