// Typed wrappers for every IPC command of the Tauri shell. Top-level command arguments
// are camelCase (Tauri convention); objects inside them and returned objects are snake_case.
import { Channel, invoke } from '@tauri-apps/api/core';
import { listen, type UnlistenFn } from '@tauri-apps/api/event';
import type {
  ApiError,
  ApiServerSettings,
  ApiServerStatus,
  AppInfo,
  ChatEvent,
  ChatHandle,
  ChatRequest,
  ChatSettings,
  ColumnDiff,
  CompareOutput,
  CompareRequest,
  CompareStarted,
  ConversationSummary,
  ConversationView,
  DownloadProgress,
  DownloadResult,
  ExportFileReport,
  ExportFormat,
  HistoryImportReport,
  ImportResult,
  Leaderboard,
  LoadedModel,
  LoadProgress,
  WarmReport,
  ModelDetails,
  ModelInfo,
  ModelLoadedEvent,
  PartialDownload,
  Preset,
  ReplayReport,
  RevealedColumn,
  SearchHit,
  Vote,
  WorkerCrashed,
} from './types';

/** Turns anything a rejected invoke (or any code) can throw into `{code, message}`. */
export function toApiError(err: unknown): ApiError {
  if (err && typeof err === 'object') {
    const o = err as Record<string, unknown>;
    if (typeof o.code === 'string' && typeof o.message === 'string') {
      return { code: o.code, message: o.message };
    }
    if (err instanceof Error) {
      return { code: typeof o.code === 'string' ? o.code : 'internal', message: err.message };
    }
    if (typeof o.message === 'string') {
      return { code: typeof o.code === 'string' ? o.code : 'unknown', message: o.message };
    }
    try {
      return { code: 'unknown', message: JSON.stringify(err) };
    } catch {
      return { code: 'unknown', message: String(err) };
    }
  }
  if (typeof err === 'string') {
    // Shells sometimes reject with a bare string; a JSON string may still hold the shape.
    try {
      const parsed = JSON.parse(err) as unknown;
      if (parsed && typeof parsed === 'object') return toApiError(parsed);
    } catch {
      /* not JSON */
    }
    return { code: 'unknown', message: err };
  }
  if (err === undefined || err === null) return { code: 'unknown', message: 'Unknown error' };
  return { code: 'unknown', message: String(err) };
}

/** invoke() whose rejections are always `ApiError`. */
async function call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(cmd, args);
  } catch (e) {
    throw toApiError(e);
  }
}

export function listModels(): Promise<ModelInfo[]> {
  return call('list_models');
}

export function openModelFile(path: string): Promise<ModelInfo> {
  return call('open_model_file', { path });
}

export function loadModel(
  modelId: string,
  onProgress: (p: LoadProgress) => void,
): Promise<LoadedModel> {
  const channel = new Channel<LoadProgress>();
  channel.onmessage = onProgress;
  return call('load_model', { modelId, onProgress: channel });
}

export function startChat(
  request: ChatRequest,
  onEvent: (e: ChatEvent) => void,
): Promise<ChatHandle> {
  const channel = new Channel<ChatEvent>();
  channel.onmessage = onEvent;
  return call('start_chat', { request, onEvent: channel });
}

/**
 * Reads the message being typed into the loaded model's cache (nothing is answered or
 * saved), so that sending it decodes only what was typed since. `wholeTurn` once typing
 * has paused: the turn's end is read too, and sending the text as it is decodes one token.
 */
export function warmPrompt(request: ChatRequest, wholeTurn = false): Promise<WarmReport> {
  return call('warm_prompt', { request, wholeTurn });
}

/** Answers a saved question again with the same model, template, sampler and seed. */
export function replayAnswer(
  messageId: string,
  onEvent: (e: ChatEvent) => void,
): Promise<ReplayReport> {
  const channel = new Channel<ChatEvent>();
  channel.onmessage = onEvent;
  return call('replay_answer', { messageId, onEvent: channel });
}

export function cancel(requestId: string): Promise<void> {
  return call('cancel', { requestId });
}

export function listConversations(
  limit: number,
  before: string | null = null,
): Promise<ConversationSummary[]> {
  return call('list_conversations', { limit, before });
}

export function getConversation(id: string): Promise<ConversationView> {
  return call('get_conversation', { id });
}

export function setCurrentLeaf(conversationId: string, messageId: string): Promise<void> {
  return call('set_current_leaf', { conversationId, messageId });
}

export function deleteMessage(id: string): Promise<void> {
  return call('delete_message', { id });
}

export function deleteConversation(id: string): Promise<void> {
  return call('delete_conversation', { id });
}

export function renameConversation(id: string, title: string): Promise<void> {
  return call('rename_conversation', { id, title });
}

export function search(query: string, includeReasoning: boolean): Promise<SearchHit[]> {
  return call('search', { query, includeReasoning });
}

export function exportConversation(id: string, format: ExportFormat): Promise<string> {
  return call('export_conversation', { id, format });
}

/** Writes one conversation, or all when `id` is null, to `path`; says what was written. */
export function exportHistoryFile(
  id: string | null,
  format: ExportFormat,
  path: string,
): Promise<ExportFileReport> {
  return call('export_history_file', { id, format, path });
}

/** Imports a JSON history export (all or nothing); already-present conversations are skipped. */
export function importHistoryFile(path: string): Promise<HistoryImportReport> {
  return call('import_history_file', { path });
}

// ---------- presets (kept in the history database) ----------

export function listPresets(): Promise<Preset[]> {
  return call('list_presets');
}

/** Creates the preset, or replaces the settings of the one with that name. */
export function savePreset(name: string, settings: ChatSettings): Promise<Preset> {
  return call('save_preset', { name, settings });
}

export function renamePreset(from: string, to: string): Promise<void> {
  return call('rename_preset', { from, to });
}

export function deletePreset(name: string): Promise<void> {
  return call('delete_preset', { name });
}

export function appInfo(): Promise<AppInfo> {
  return call('app_info');
}

// ---------- side by side and leaderboard ----------

export function startCompare(
  request: CompareRequest,
  onEvent: (e: CompareOutput) => void,
): Promise<CompareStarted> {
  const channel = new Channel<CompareOutput>();
  channel.onmessage = onEvent;
  return call('start_compare', { request, onEvent: channel });
}

/** `runId` is the `handle` start_compare returned. */
export function cancelCompare(runId: string): Promise<void> {
  return call('cancel_compare', { runId });
}

/** Records the vote; returns who each (displayed) column was. */
export function voteCompare(runId: string, vote: Vote): Promise<RevealedColumn[]> {
  return call('vote_compare', { runId, vote });
}

export function compareDiff(
  answerA: string,
  thinkingA: string,
  answerB: string,
  thinkingB: string,
): Promise<ColumnDiff> {
  return call('compare_diff', { answerA, thinkingA, answerB, thinkingB });
}

export function leaderboard(tag: string | null): Promise<Leaderboard> {
  return call('leaderboard', { tag });
}

export function leaderboardCsv(tag: string | null): Promise<string> {
  return call('leaderboard_csv', { tag });
}

// ---------- models screen ----------

/** `nCtx` 0 = the model's trained context. */
export function modelDetails(modelId: string, nCtx: number): Promise<ModelDetails> {
  return call('model_details', { modelId, nCtx });
}

export function importModel(path: string, link: boolean): Promise<ImportResult> {
  return call('import_model', { path, link });
}

/** The first progress event (0 bytes) carries the `download_id` for cancelDownload. */
export function downloadModel(
  url: string,
  sha256: string | null,
  onProgress: (p: DownloadProgress) => void,
): Promise<DownloadResult> {
  const channel = new Channel<DownloadProgress>();
  channel.onmessage = onProgress;
  return call('download_model', { url, sha256, onProgress: channel });
}

export function cancelDownload(downloadId: string): Promise<void> {
  return call('cancel_download', { downloadId });
}

/** Downloads that stopped before their end (`.part` files in the models folder). */
export function partialDownloads(): Promise<PartialDownload[]> {
  return call('partial_downloads');
}

/** Continues an unfinished download with the URL and sha256 it started with; progress
 * as for downloadModel. */
export function resumeDownload(fileName: string, onProgress: (p: DownloadProgress) => void): Promise<DownloadResult> {
  const channel = new Channel<DownloadProgress>();
  channel.onmessage = onProgress;
  return call('resume_download', { fileName, onProgress: channel });
}

export function deletePartialDownload(fileName: string): Promise<void> {
  return call('delete_partial_download', { fileName });
}

export function removeModel(modelId: string): Promise<ModelInfo> {
  return call('remove_model', { modelId });
}

/** An empty name goes back to the file's own. */
export function renameModel(modelId: string, name: string | null): Promise<void> {
  return call('rename_model', { modelId, name });
}

/** Layers on GPU and RPC devices for this model from its next load; null = auto. */
export function setModelGpuLayers(modelId: string, layers: number | null): Promise<void> {
  return call('set_model_gpu_layers', { modelId, layers });
}

// ---------- remote devices (llama.cpp RPC) ----------

/** The `host:port` of llama.cpp RPC servers that loaded models are spread over. */
export function remoteDevices(): Promise<string[]> {
  return call('remote_devices');
}

/** Replaces the list (each entry `host:port`); resolves to the list as saved. */
export function setRemoteDevices(servers: string[]): Promise<string[]> {
  return call('set_remote_devices', { servers });
}

// ---------- local API server ----------

export function apiServerStatus(): Promise<ApiServerStatus> {
  return call('api_server_status');
}

/** Saves the choice and starts, restarts or stops the server to match; a failure to start
 * comes back in `error` of the status, bad input as a rejection. */
export function setApiServer(s: ApiServerSettings): Promise<ApiServerStatus> {
  return call('set_api_server', {
    enabled: s.enabled,
    host: s.host,
    port: s.port,
    apiKey: s.api_key,
    saveHistory: s.save_history,
  });
}

export function onWorkerCrashed(cb: (e: WorkerCrashed) => void): Promise<UnlistenFn> {
  return listen<WorkerCrashed>('worker-crashed', (e) => cb(e.payload));
}

export function onModelLoaded(cb: (e: ModelLoadedEvent) => void): Promise<UnlistenFn> {
  return listen<ModelLoadedEvent>('model-loaded', (e) => cb(e.payload));
}

/** True when running inside the Tauri shell (or under mockIPC). */
export function hasIpc(): boolean {
  return typeof window !== 'undefined' && '__TAURI_INTERNALS__' in window;
}
