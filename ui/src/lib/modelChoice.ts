// Which model the picker shows on first start, and what the picker says about memory
// before a model is loaded.
import { formatBytes } from './format';
import type { FitEstimate, ModelInfo } from './types';

/**
 * The model selected when the app starts with none chosen: the last one used if it is
 * still there and readable, else the only usable one. With several usable models and no
 * history, nothing is picked: guessing would load gigabytes the user did not ask for.
 */
export function initialModel(models: ModelInfo[], lastUsed: string | null): string | null {
  const usable = models.filter((m) => !m.error);
  const last = usable.find((m) => m.id === lastUsed);
  if (last) return last.id;
  return usable.length === 1 ? usable[0].id : null;
}

/** "· fits 0.3 GB" after a model's name in the picker; empty while unknown. */
export function fitSuffix(fit: FitEstimate | null | undefined): string {
  if (!fit) return '';
  const label = fit.fit === 'wont_fit' ? "won't fit" : fit.fit;
  return ` · ${label} (${formatBytes(fit.total_bytes)})`;
}

/**
 * The question asked before loading a model the estimate says will not fit; null when
 * loading can go ahead (fits, tight, or no estimate: a missing estimate is no reason to
 * stop someone).
 */
export function fitWarning(name: string, fit: FitEstimate | null | undefined): string | null {
  if (!fit || fit.fit !== 'wont_fit') return null;
  const free = fit.available_bytes !== null ? `, ${formatBytes(fit.available_bytes)} free` : '';
  return `${name} needs about ${formatBytes(fit.total_bytes)} at ${fit.n_ctx.toLocaleString('en-US')} tokens of context${free}. Loading it may make the computer swap or the load fail.`;
}
