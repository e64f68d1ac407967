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
  n_ctx_train: number;
  has_chat_template: boolean;
  template_name: string;
  reasoning_format: string;
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
}

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

export interface AppInfo {
  version: string;
  data_dir: string;
  models_dirs: string[];
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
