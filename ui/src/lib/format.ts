import type { Metrics, Usage } from './types';

export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

export function formatParams(n: number | null): string {
  if (n === null || !Number.isFinite(n) || n <= 0) return '—';
  if (n >= 1e9) return `${(n / 1e9).toFixed(n >= 1e10 ? 0 : 1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(0)}M`;
  return `${n}`;
}

/** 950 ms → "0.95 s", 14200 → "14 s", 75000 → "1 min 15 s". */
export function formatSeconds(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(s < 1 ? 2 : 1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

export function formatWh(wh: number): string {
  if (!Number.isFinite(wh) || wh <= 0) return '—';
  if (wh < 0.001) return `${(wh * 1000).toFixed(2)} mWh`;
  if (wh < 1) return `${wh.toFixed(3)} Wh`;
  return `${wh.toFixed(2)} Wh`;
}

export function formatTps(tps: number): string {
  if (!Number.isFinite(tps) || tps <= 0) return '—';
  return `${tps >= 100 ? tps.toFixed(0) : tps.toFixed(1)} t/s`;
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function energyMethodText(method: string): string {
  switch (method) {
    case 'rapl':
      return 'measured from the CPU package energy counters (Intel/AMD RAPL) during generation';
    case 'cpu-time':
      return 'estimated: CPU seconds used by the engine × a per-core wattage (no hardware counter available)';
    case '':
      return 'not measured';
    default:
      return `method: ${method}`;
  }
}

export interface CostItem {
  key: string;
  label: string;
  value: string;
  title: string;
}

/** The compact cost line under an answer, each item with how it was measured. */
export function costItems(m: Metrics, u: Usage | null): CostItem[] {
  const items: CostItem[] = [
    {
      key: 'ttft',
      label: 'TTFT',
      value: formatSeconds(m.ttft_ms),
      title: 'Time to first token: from the request reaching the engine to the first streamed token (prompt processing included).',
    },
    {
      key: 'tps',
      label: '',
      value: formatTps(m.gen_tps),
      title: `Generation speed: generated tokens / generation time (${formatSeconds(m.gen_ms)}). Prompt processing: ${formatTps(m.prompt_tps)}.`,
    },
  ];
  if (u) {
    if (u.reasoning_tokens > 0) {
      items.push({
        key: 'tokens',
        label: '',
        value: `${formatCount(u.reasoning_tokens)} thinking + ${formatCount(u.answer_tokens)} answer tok`,
        title: `Tokens counted by the tokenizer. Prompt: ${formatCount(u.prompt_tokens)} (${formatCount(u.cached_prompt_tokens)} reused from cache).`,
      });
    } else {
      items.push({
        key: 'tokens',
        label: '',
        value: `${formatCount(u.completion_tokens)} tok`,
        title: `Generated tokens, counted by the tokenizer. Prompt: ${formatCount(u.prompt_tokens)} (${formatCount(u.cached_prompt_tokens)} reused from cache).`,
      });
    }
  }
  if (u && m.thoughts_dropped_tokens > 0 && u.prompt_tokens > u.cached_prompt_tokens) {
    // Earlier thoughts are left out of later prompts, so the cache (which holds them) is
    // reused only up to the first one; what follows it is read again.
    const decoded = u.prompt_tokens - u.cached_prompt_tokens;
    items.push({
      key: 'reread',
      label: '',
      value: `${formatCount(decoded)} prompt tok decoded again`,
      title: `Earlier thoughts (${formatCount(m.thoughts_dropped_tokens)} tokens) are not sent again, so the cache could be reused only up to the first of them: ${formatCount(u.cached_prompt_tokens)} of ${formatCount(u.prompt_tokens)} prompt tokens came from the cache, ${formatCount(decoded)} were decoded.`,
    });
  }
  items.push({
    key: 'wall',
    label: '',
    value: formatSeconds(m.wall_ms),
    title: `Wall-clock time for the whole answer${m.thinking_ms > 0 ? ` (thinking ${formatSeconds(m.thinking_ms)}, answer ${formatSeconds(m.answer_ms)})` : ''}.`,
  });
  if (m.energy_wh > 0) {
    items.push({
      key: 'energy',
      label: '',
      value: formatWh(m.energy_wh),
      title: `Energy ${energyMethodText(m.energy_method)}.${m.energy_thinking_wh > 0 ? ` Thinking ${formatWh(m.energy_thinking_wh)}, answer ${formatWh(m.energy_answer_wh)}.` : ''}`,
    });
  }
  if (m.drafted_tokens > 0) {
    items.push({
      key: 'speculative',
      label: '',
      value: speculativeText(m),
      title: 'Speculative decoding: tokens drafted (from the context or a draft model) and checked by the model in one batch; only those it would have written itself are kept.',
    });
  }
  return items;
}

/** "speculative: 412 of 530 drafted accepted" */
export function speculativeText(m: Pick<Metrics, 'accepted_tokens' | 'drafted_tokens'>): string {
  return `speculative: ${formatCount(m.accepted_tokens)} of ${formatCount(m.drafted_tokens)} drafted accepted`;
}

export function relativeTime(iso: string, now = Date.now()): string {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '';
  const d = Math.max(0, now - t) / 1000;
  if (d < 60) return 'just now';
  if (d < 3600) return `${Math.floor(d / 60)} min ago`;
  if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
  if (d < 86400 * 7) return `${Math.floor(d / 86400)} d ago`;
  return new Date(t).toLocaleDateString();
}

export type DateGroup = 'Pinned' | 'Today' | 'Previous 7 days' | 'Previous 30 days' | 'Older';

export function dateGroup(iso: string, pinned: boolean, now = Date.now()): DateGroup {
  if (pinned) return 'Pinned';
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return 'Older';
  const startOfToday = new Date(now);
  startOfToday.setHours(0, 0, 0, 0);
  if (t >= startOfToday.getTime()) return 'Today';
  const days = (now - t) / 86400000;
  if (days < 7) return 'Previous 7 days';
  if (days < 30) return 'Previous 30 days';
  return 'Older';
}
