// Shapes shared with the Rust side. Field names follow serde (snake_case);
// see crates/conclave-core/src/events.rs for ChatEvent, SamplingParams, Metrics, Usage.

export type ThinkMode = 'on' | 'off' | 'auto';
export type Role = 'user' | 'assistant' | 'system';
export type StopReason = 'eos' | 'max_tokens' | 'stop_string' | 'cancelled' | 'context_full';
export type MessageStatus = 'streaming' | 'complete' | 'cancelled' | 'interrupted' | 'error';

export interface SamplingParams {
  temperature: number;
  top_k: number;
  top_p: number;
  min_p: number;
  repeat_penalty: number;
  repeat_last_n: number;
  frequency_penalty: number;
  presence_penalty: number;
  /** null: a random seed is drawn and reported. */
  seed: number | null;
  max_tokens: number;
  stop: string[];
}

export interface Usage {
  prompt_tokens: number;
  cached_prompt_tokens: number;
  completion_tokens: number;
  reasoning_tokens: number;
  answer_tokens: number;
}

export interface Metrics {
  ttft_ms: number;
  prompt_eval_ms: number;
  prompt_tps: number;
  gen_ms: number;
  gen_tps: number;
  wall_ms: number;
  thinking_ms: number;
  answer_ms: number;
  threads: number;
  peak_rss_bytes: number;
  cpu_seconds: number;
  energy_wh: number;
  energy_thinking_wh: number;
  energy_answer_wh: number;
  energy_method: string;
  dropped_messages: number;
  seed: number;
  template: string;
  reasoning_format: string;
  thinking: ThinkMode;
  budget_cut_at: number | null;
  reasoning_cut_off: boolean;
  thoughts_dropped_tokens: number;
  /** From the request to the first thought / first answer text; absent when none. */
  first_reasoning_ms?: number | null;
  first_answer_ms?: number | null;
  /** Speculative decoding: tokens drafted and verified, and how many were kept. */
  drafted_tokens?: number;
  accepted_tokens?: number;
}

export type ChatEvent =
  | {
      type: 'started';
      request_id: string;
      model: string;
      seed: number;
      reasoning_format: string;
      prompt_tokens: number;
      cached_prompt_tokens: number;
    }
  | { type: 'reasoning'; text: string }
  | { type: 'token'; text: string }
  | { type: 'done'; stop_reason: StopReason; usage: Usage; metrics: Metrics }
  | { type: 'error'; code: string; message: string };

export interface ModelInfo {
  id: string;
  name: string;
  path: string;
  size_bytes: number;
  architecture: string | null;
  quantization: string | null;
  parameter_count: number | null;
  context_length: number | null;
  has_chat_template: boolean;
  reasoning_format: string | null;
  /** Set when the file is broken / unreadable. */
  error: string | null;
}

export interface LoadedModel {
  model_id: string;
  name: string;
  load_ms: number;
  /** The context actually allocated at load. */
  n_ctx: number;
  n_ctx_train: number;
  has_chat_template: boolean;
  template_name: string;
  reasoning_format: string;
  /** False when the model's chat template has no way to switch its thinking off. */
  thinking_off_available: boolean;
  /** Why Off does nothing with this model; null when it works. */
  thinking_off_reason: string | null;
}

export interface LoadProgress {
  fraction: number;
}

export interface ChatSettings {
  system_prompt: string;
  sampling: SamplingParams;
  think: ThinkMode;
  think_budget: number | null;
  keep_thoughts: boolean;
  n_ctx: number;
  threads: number | null;
  template: string | null;
  /** Speculative decoding; the text is the same in every mode. */
  speculative: SpeculativeMode;
  /** A GGUF path drafting for the model (same vocabulary); loaded with it. */
  draft_model: string | null;
}

export type SpeculativeMode = 'off' | 'auto' | 'lookup' | 'draft';

export interface ChatRequest {
  conversation_id: string | null;
  /** Attach the user message here; null = end of the current path. */
  parent_id: string | null;
  content: string;
  model_id: string;
  settings: ChatSettings;
  /** An assistant message id: new sibling answer to the same user message; content ignored. */
  regenerate_of: string | null;
  /** A user message id: new sibling user message with new content. */
  edit_of: string | null;
}

export interface ChatHandle {
  request_id: string;
  conversation_id: string;
  user_message_id: string;
  assistant_message_id: string;
}

export interface ConversationSummary {
  id: string;
  title: string;
  created_at: string;
  updated_at: string;
  pinned: boolean;
  message_count: number;
  last_model: string | null;
}

export interface MessageView {
  id: string;
  parent_id: string | null;
  role: Role;
  content: string;
  reasoning: string | null;
  status: MessageStatus;
  error: string | null;
  model_name: string | null;
  created_at: string;
  metrics: Metrics | null;
  usage: Usage | null;
  stop_reason: string | null;
}

export interface ConversationView {
  id: string;
  title: string;
  system_prompt: string;
  settings: ChatSettings | null;
  current_leaf_id: string | null;
  messages: MessageView[];
}

export interface SearchHit {
  conversation_id: string;
  message_id: string;
  title: string;
  snippet: string;
  role: Role;
}

export type ExportFormat = 'md' | 'json';

/** Named settings kept in the history database (the core's history::Preset). */
export interface Preset {
  name: string;
  settings: ChatSettings;
  created_at: number;
  updated_at: number;
}

/** What a file export really wrote (the core's ExportFileReport). */
export interface ExportFileReport {
  path: string;
  conversations: number;
  bytes: number;
}

/** The core's history ImportReport: conversations whose id already exists are skipped. */
export interface HistoryImportReport {
  conversations: number;
  messages: number;
  skipped_existing: string[];
  presets?: number;
  skipped_presets?: string[];
}

export interface AppInfo {
  version: string;
  data_dir: string;
  models_dirs: string[];
}

/** The local OpenAI-compatible API server's saved choices (app-settings.json). */
export interface ApiServerSettings {
  enabled: boolean;
  host: string;
  port: number;
  /** null: no key (loopback only; the shell refuses other addresses without one). */
  api_key: string | null;
  save_history: boolean;
}

export interface ApiServerStatus {
  running: boolean;
  /** `http://HOST:PORT/v1` while running. */
  base_url: string | null;
  /** Why it is not running although switched on (port in use, key required…). */
  error: ApiError | null;
  settings: ApiServerSettings;
}

export interface WorkerCrashed {
  model_id: string;
  message: string;
}

export interface ModelLoadedEvent {
  model_id: string;
}

export interface ApiError {
  code: string;
  message: string;
}

// ---------- side by side (crates/conclave-core/src/compare.rs) ----------

export interface CompareColumnRequest {
  /** Catalog id (the shell resolves it to the file). */
  model_id: string;
  settings: ChatSettings;
  label: string | null;
}

export interface CompareOptions {
  blind: boolean;
  tag: string | null;
  no_save: boolean;
  conversation_id: string | null;
  parent_id: string | null;
  memory_limit_bytes: number | null;
  sequential: boolean;
  cores: number | null;
  shuffle_seed: number | null;
}

export interface CompareRequest {
  prompt: string;
  columns: CompareColumnRequest[];
  options: Partial<CompareOptions>;
}

export interface CompareStarted {
  /** For cancel_compare. */
  handle: string;
  /** The stored run (for vote_compare); null when not saved. */
  run_id: string | null;
  conversation_id: string | null;
  user_message_id: string | null;
}

export interface PlanColumn {
  column: number;
  label: string;
  /** File name; null while blind. */
  model: string | null;
  lane: number;
}

export interface ComparePlan {
  type: 'plan';
  run_id: string | null;
  conversation_id: string | null;
  user_message_id: string | null;
  blind: boolean;
  sequential: boolean;
  reason: string | null;
  workers: number;
  concurrency: number;
  threads_per_worker: number;
  memory_needed_bytes: number;
  memory_budget_bytes: number | null;
  columns: PlanColumn[];
}

export interface LaneLoaded {
  type: 'loaded';
  lane: number;
  columns: number[];
  pid: number;
  threads: number;
  load_ms: number;
}

export type ColumnStatus = 'done' | 'cancelled' | 'error';

export interface ColumnFigures {
  column: number;
  label: string;
  model: string | null;
  status: ColumnStatus;
  error: string | null;
  stop_reason: StopReason | null;
  ttft_ms: number;
  tokens_per_second: number;
  thinking_tokens: number;
  answer_tokens: number;
  completion_tokens: number;
  seconds: number;
  energy_wh: number;
  energy_method: string;
  threads: number;
  message_id: string | null;
}

export interface CompareSummary {
  type: 'summary';
  run_id: string | null;
  blind: boolean;
  sequential: boolean;
  reason: string | null;
  columns: ColumnFigures[];
  fastest: number | null;
  cheapest: number | null;
  generation_seconds: number;
  aggregate_tokens_per_second: number;
}

/** A column's chat event, flattened: `{column: 0, type: 'token', text: '…'}`. */
export type CompareColumnEvent = ChatEvent & { column: number };

export type CompareOutput = ComparePlan | LaneLoaded | CompareSummary | CompareColumnEvent;

/** `x_better`: that column is the best; `rank:c>a=b`: a full ranking (see leaderboard.rs). */
export type Vote = 'a_better' | 'b_better' | 'c_better' | 'd_better' | 'tie' | 'both_bad' | `rank:${string}`;

export interface RevealedColumn {
  column: number;
  model: string;
  sha256: string | null;
  message_id: string | null;
}

export type DiffOp = { op: 'equal' | 'insert' | 'delete'; text: string };

export interface ColumnDiff {
  answer: DiffOp[];
  thinking: DiffOp[];
}

export interface LeaderboardRow {
  rank: number;
  model_id: string;
  name: string;
  votes: number;
  wins: number;
  losses: number;
  ties: number;
  both_bad: number;
  elo: number;
  bt_score: number;
  bt_ci_low: number;
  bt_ci_high: number;
  bt_strength: number;
}

export interface Leaderboard {
  tag: string | null;
  votes: number;
  games: number;
  regularized: boolean;
  rows: LeaderboardRow[];
}

// ---------- models screen (crates/conclave-core/src/models) ----------

export type Fit = 'fits' | 'tight' | 'wont_fit';

export interface FitEstimate {
  n_ctx: number;
  weights_bytes: number;
  kv_cache_bytes: number;
  compute_bytes: number;
  compute_reserved_bytes: number;
  overhead_bytes: number;
  total_bytes: number;
  available_bytes: number | null;
  fit: Fit;
  notes: string[];
}

export interface ModelDetails {
  model: ModelInfo;
  file_name: string;
  folder: string;
  parts: string[];
  sha256: string | null;
  tags: string[];
  general_name: string | null;
  license: string | null;
  layer_count: number | null;
  embedding_length: number | null;
  head_count: number | null;
  head_count_kv: number | null;
  gguf_version: number | null;
  split_count: number | null;
  weights_bytes: number | null;
  fit: FitEstimate | null;
  fit_error: ApiError | null;
}

export interface ImportResult {
  imported: ModelInfo[];
  skipped: { path: string; code: string; message: string }[];
}

export interface DownloadProgress {
  download_id: string;
  bytes_done: number;
  total: number | null;
  bytes_per_sec: number;
  eta_secs: number | null;
  resumed_from: number;
  attempt: number;
  done: boolean;
}

export interface DownloadResult {
  download_id: string;
  path: string;
  sha256: string;
  size: number;
  /** Who vouched for the sha256 the download was checked against. */
  sha256_source: 'user' | 'hugging_face' | 'unverified' | string;
  resumed: boolean;
  model: ModelInfo | null;
}
