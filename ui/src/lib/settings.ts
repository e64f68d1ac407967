// The defaults, the templates and the ranges come from the core (APP_CONSTANTS, generated
// from conclave_core::settings): the UI offers exactly what the core accepts.
import { APP_CONSTANTS } from './bindings';
import type { ChatSettings, SamplingField, SamplingParams, SpeculativeMode } from './types';

export function defaultSampling(): SamplingParams {
  return structuredClone(APP_CONSTANTS.default_sampling);
}

export function defaultSettings(): ChatSettings {
  return structuredClone(APP_CONSTANTS.default_settings);
}

/** The built-in chat templates the core has (besides the model's own). */
export const TEMPLATES: readonly string[] = APP_CONSTANTS.templates;

/** How each speculative decoding mode is offered (labels are the UI's; the modes the core's). */
const SPECULATIVE_LABELS: Record<SpeculativeMode, string> = {
  auto: 'Auto (greedy answers, while it pays)',
  lookup: 'Prompt lookup',
  draft: 'Draft model',
  off: 'Off',
};

export const SPECULATIVE_MODES: readonly { value: SpeculativeMode; label: string }[] =
  APP_CONSTANTS.speculative_modes.map((value) => ({ value, label: SPECULATIVE_LABELS[value] }));

/** The numeric sampling parameters the settings offer, with their ranges. */
export const SAMPLING_FIELDS: readonly SamplingField[] = APP_CONSTANTS.sampling_fields;

type NumericSamplingKey = { [K in keyof SamplingParams]: SamplingParams[K] extends number ? K : never }[keyof SamplingParams];

/** `v` clamped to the field's range (rounded for whole-number fields); NaN → `fallback`. */
export function clampField(f: SamplingField, v: number, fallback: number): number {
  if (!Number.isFinite(v)) return fallback;
  const x = f.integer ? Math.round(v) : v;
  return Math.max(f.min, Math.min(f.max, x));
}

/** Sets one numeric sampling parameter by the core's key. */
export function setSamplingField(s: SamplingParams, f: SamplingField, v: number): void {
  const key = f.key as NumericSamplingKey;
  s[key] = clampField(f, v, s[key]);
}

export function samplingValue(s: SamplingParams, f: SamplingField): number {
  return s[f.key as NumericSamplingKey];
}

/** Fills missing/invalid fields from the defaults (stored data may be old or hand-edited). */
export function normalizeSettings(raw: unknown): ChatSettings {
  const d = defaultSettings();
  if (!raw || typeof raw !== 'object') return d;
  const r = raw as Partial<ChatSettings>;
  const s = { ...d.sampling, ...(r.sampling && typeof r.sampling === 'object' ? r.sampling : {}) };
  const num = (v: unknown, fallback: number) =>
    typeof v === 'number' && Number.isFinite(v) ? v : fallback;
  const sampling: SamplingParams = {
    ...d.sampling,
    seed: typeof s.seed === 'number' && Number.isInteger(s.seed) && s.seed >= 0 ? s.seed : null,
    max_tokens: Math.max(1, Math.round(num(s.max_tokens, d.sampling.max_tokens))),
    stop: Array.isArray(s.stop) ? s.stop.filter((x): x is string => typeof x === 'string') : [],
  };
  for (const f of SAMPLING_FIELDS) {
    const key = f.key as NumericSamplingKey;
    sampling[key] = clampField(f, num(s[key], d.sampling[key]), d.sampling[key]);
  }
  return {
    system_prompt: typeof r.system_prompt === 'string' ? r.system_prompt : d.system_prompt,
    sampling,
    think: r.think === 'on' || r.think === 'off' || r.think === 'auto' ? r.think : d.think,
    think_budget:
      typeof r.think_budget === 'number' && r.think_budget > 0 ? Math.round(r.think_budget) : null,
    keep_thoughts: typeof r.keep_thoughts === 'boolean' ? r.keep_thoughts : d.keep_thoughts,
    n_ctx: Math.max(APP_CONSTANTS.min_n_ctx, Math.round(num(r.n_ctx, d.n_ctx))),
    threads: typeof r.threads === 'number' && r.threads > 0 ? Math.round(r.threads) : null,
    template: typeof r.template === 'string' && TEMPLATES.includes(r.template) ? r.template : null,
    context_overflow:
      r.context_overflow === 'stop' || r.context_overflow === 'truncate_middle' ? r.context_overflow : 'drop_oldest',
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
