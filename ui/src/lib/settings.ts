import type { ChatSettings, SamplingParams, SpeculativeMode } from './types';

export function defaultSampling(): SamplingParams {
  // llama.cpp defaults (same as SamplingParams::default in conclave-core).
  return {
    temperature: 0.8,
    top_k: 40,
    top_p: 0.95,
    min_p: 0.05,
    repeat_penalty: 1.0,
    repeat_last_n: 64,
    frequency_penalty: 0,
    presence_penalty: 0,
    seed: null,
    max_tokens: 512,
    stop: [],
  };
}

export function defaultSettings(): ChatSettings {
  return {
    system_prompt: '',
    sampling: defaultSampling(),
    think: 'auto',
    think_budget: null,
    keep_thoughts: false,
    n_ctx: 4096,
    threads: null,
    template: null,
    speculative: 'auto',
    draft_model: null,
  };
}

export const SPECULATIVE_MODES: { value: SpeculativeMode; label: string }[] = [
  { value: 'auto', label: 'Auto (drafts while it pays)' },
  { value: 'lookup', label: 'Prompt lookup' },
  { value: 'draft', label: 'Draft model' },
  { value: 'off', label: 'Off' },
];

export const TEMPLATES = [
  'chatml',
  'llama3',
  'llama2',
  'gemma',
  'mistral-v7',
  'phi3',
  'phi4',
  'deepseek3',
  'command-r',
  'zephyr',
  'vicuna',
];

/** Fills missing/invalid fields from the defaults (stored data may be old or hand-edited). */
export function normalizeSettings(raw: unknown): ChatSettings {
  const d = defaultSettings();
  if (!raw || typeof raw !== 'object') return d;
  const r = raw as Partial<ChatSettings>;
  const s = { ...d.sampling, ...(r.sampling && typeof r.sampling === 'object' ? r.sampling : {}) };
  const num = (v: unknown, fallback: number) =>
    typeof v === 'number' && Number.isFinite(v) ? v : fallback;
  return {
    system_prompt: typeof r.system_prompt === 'string' ? r.system_prompt : d.system_prompt,
    sampling: {
      temperature: num(s.temperature, d.sampling.temperature),
      top_k: num(s.top_k, d.sampling.top_k),
      top_p: num(s.top_p, d.sampling.top_p),
      min_p: num(s.min_p, d.sampling.min_p),
      repeat_penalty: num(s.repeat_penalty, d.sampling.repeat_penalty),
      repeat_last_n: num(s.repeat_last_n, d.sampling.repeat_last_n),
      frequency_penalty: num(s.frequency_penalty, d.sampling.frequency_penalty),
      presence_penalty: num(s.presence_penalty, d.sampling.presence_penalty),
      seed: typeof s.seed === 'number' && Number.isInteger(s.seed) && s.seed >= 0 ? s.seed : null,
      max_tokens: Math.max(1, Math.round(num(s.max_tokens, d.sampling.max_tokens))),
      stop: Array.isArray(s.stop) ? s.stop.filter((x): x is string => typeof x === 'string') : [],
    },
    think: r.think === 'on' || r.think === 'off' || r.think === 'auto' ? r.think : d.think,
    think_budget:
      typeof r.think_budget === 'number' && r.think_budget > 0 ? Math.round(r.think_budget) : null,
    keep_thoughts: typeof r.keep_thoughts === 'boolean' ? r.keep_thoughts : d.keep_thoughts,
    n_ctx: Math.max(256, Math.round(num(r.n_ctx, d.n_ctx))),
    threads: typeof r.threads === 'number' && r.threads > 0 ? Math.round(r.threads) : null,
    template: typeof r.template === 'string' && r.template ? r.template : null,
    speculative: SPECULATIVE_MODES.some((m) => m.value === r.speculative)
      ? (r.speculative as SpeculativeMode)
      : d.speculative,
    draft_model: typeof r.draft_model === 'string' && r.draft_model.trim() ? r.draft_model.trim() : null,
  };
}

const SETTINGS_KEY = 'conclave.settings.v1';

function storage(): Storage | null {
  try {
    return typeof localStorage !== 'undefined' ? localStorage : null;
  } catch {
    return null;
  }
}

export function loadSettings(): ChatSettings {
  try {
    const raw = storage()?.getItem(SETTINGS_KEY);
    return normalizeSettings(raw ? JSON.parse(raw) : null);
  } catch {
    return defaultSettings();
  }
}

export function saveSettings(s: ChatSettings): void {
  try {
    storage()?.setItem(SETTINGS_KEY, JSON.stringify(s));
  } catch {
    /* storage full or unavailable: settings still apply for this session */
  }
}

/** Parses a numeric input; empty → null (e.g. seed empty = random). */
export function parseOptionalInt(v: string): number | null {
  const t = v.trim();
  if (t === '') return null;
  const n = Number(t);
  return Number.isInteger(n) && n >= 0 ? n : null;
}
