// Side by side: a pure reducer from the core's CompareOutput stream to what the columns
// show, plus the small rules the view needs (names while blind, live figures, highlights).
// Ratings, scheduling and the diff itself are computed in the core; nothing here decides
// anything the core reports.
import { APP_CONSTANTS } from './bindings';
import { applyEvents, initialStream, type StreamState } from './stream';
import type {
  ChatEvent,
  ChatSettings,
  ColumnFigures,
  CompareColumnEvent,
  CompareOutput,
  ComparePlan,
  CompareSummary,
  RevealedColumn,
  SpeculativeMode,
  ThinkMode,
  Vote,
} from './types';

export const MIN_COLUMNS = APP_CONSTANTS.min_columns;
export const MAX_COLUMNS = APP_CONSTANTS.max_columns;

/** One column as configured before sending: a model and what sets it apart. */
export interface ColumnConfig {
  key: number;
  modelId: string | null;
  temperature: number;
  think: ThinkMode;
  thinkBudget: number | null;
  systemPrompt: string;
  /** A column with a draft model gets its own worker (the model and its drafter). */
  speculative: SpeculativeMode;
  draftModel: string | null;
}

export function columnSettings(base: ChatSettings, c: ColumnConfig): ChatSettings {
  return {
    ...base,
    system_prompt: c.systemPrompt,
    think: c.think,
    think_budget: c.thinkBudget,
    speculative: c.speculative,
    draft_model: c.draftModel,
    sampling: { ...base.sampling, temperature: c.temperature },
  };
}

export interface ColumnRun {
  column: number;
  label: string;
  /** File name; null while blind. */
  model: string | null;
  lane: number;
  loaded: boolean;
  stream: StreamState;
  /** performance.now() of the column's `started` event and of its first token. */
  startedAt: number | null;
  firstTokenAt: number | null;
  /** Set by the summary. */
  figures: ColumnFigures | null;
}

export interface CompareRunState {
  plan: ComparePlan | null;
  columns: ColumnRun[];
  summary: CompareSummary | null;
  /** Who each column was, once voted (blind) — by displayed column. */
  revealed: RevealedColumn[] | null;
  done: boolean;
}

export function initialRun(): CompareRunState {
  return { plan: null, columns: [], summary: null, revealed: null, done: false };
}

function isColumnEvent(o: CompareOutput): o is CompareColumnEvent {
  return o.type !== 'plan' && o.type !== 'loaded' && o.type !== 'summary';
}

function blankColumn(column: number): ColumnRun {
  return {
    column,
    label: `Column ${column + 1}`,
    model: null,
    lane: 0,
    loaded: false,
    stream: initialStream(),
    startedAt: null,
    firstTokenAt: null,
    figures: null,
  };
}

/** Applies a batch of outputs in order; `now` stamps the live timings. */
export function applyCompare(
  state: CompareRunState,
  outputs: readonly CompareOutput[],
  now: number,
): CompareRunState {
  if (outputs.length === 0) return state;
  const s: CompareRunState = { ...state, columns: [...state.columns] };
  // Per-column events of this batch, so each column's reducer runs once.
  const pending = new Map<number, ChatEvent[]>();
  const ensure = (i: number) => {
    while (s.columns.length <= i) s.columns.push(blankColumn(s.columns.length));
  };
  const flush = () => {
    for (const [i, events] of pending) {
      ensure(i);
      const c = { ...s.columns[i] };
      const before = c.stream;
      c.stream = applyEvents(before, events);
      if (c.startedAt === null && events.some((e) => e.type === 'started')) c.startedAt = now;
      const produced = c.stream.reasoningDeltas + c.stream.answerDeltas;
      if (c.firstTokenAt === null && produced > 0) c.firstTokenAt = now;
      s.columns[i] = c;
    }
    pending.clear();
  };
  for (const o of outputs) {
    if (isColumnEvent(o)) {
      const { column, ...event } = o;
      const list = pending.get(column) ?? [];
      list.push(event as ChatEvent);
      pending.set(column, list);
      continue;
    }
    flush();
    switch (o.type) {
      case 'plan':
        s.plan = o;
        for (const p of o.columns) {
          ensure(p.column);
          s.columns[p.column] = { ...s.columns[p.column], label: p.label, model: p.model, lane: p.lane };
        }
        break;
      case 'loaded':
        for (const i of o.columns) {
          ensure(i);
          s.columns[i] = { ...s.columns[i], loaded: true };
        }
        break;
      case 'summary':
        s.summary = o;
        s.done = true;
        for (const f of o.columns) {
          ensure(f.column);
          s.columns[f.column] = { ...s.columns[f.column], figures: f, label: f.label, model: f.model ?? s.columns[f.column].model };
        }
        break;
    }
  }
  flush();
  return s;
}

/** The name a column shows: "Model A" while blind, the file name once known. */
export function columnName(run: CompareRunState, column: number): string {
  const revealed = run.revealed?.find((r) => r.column === column);
  if (revealed) return revealed.model;
  const c = run.columns[column];
  if (!c) return `Column ${column + 1}`;
  // Not blind: the core's label says what sets twin columns apart; blind: "Model A".
  return c.label || c.model || `Column ${column + 1}`;
}

/** Blind and not yet voted on: names stay hidden. */
export function isHidden(run: CompareRunState): boolean {
  return (run.plan?.blind ?? false) && run.revealed === null;
}

export interface LiveFigures {
  ttftMs: number | null;
  tokensPerSecond: number | null;
  thinkingTokens: number;
  answerTokens: number;
  seconds: number | null;
  energyWh: number | null;
  final: boolean;
}

/**
 * What a column's figure line shows: the core's figures once the run has its summary (or
 * the column its `done`), estimates from arrival times while it streams.
 */
export function liveFigures(c: ColumnRun, now: number): LiveFigures {
  if (c.figures) {
    const f = c.figures;
    return {
      ttftMs: f.ttft_ms,
      tokensPerSecond: f.tokens_per_second,
      thinkingTokens: f.thinking_tokens,
      answerTokens: f.answer_tokens,
      seconds: f.seconds,
      energyWh: f.energy_wh,
      final: true,
    };
  }
  const st = c.stream;
  if (st.done && st.metrics) {
    return {
      ttftMs: st.metrics.ttft_ms,
      tokensPerSecond: st.metrics.gen_tps,
      thinkingTokens: st.usage?.reasoning_tokens ?? st.reasoningDeltas,
      answerTokens: st.usage?.answer_tokens ?? st.answerDeltas,
      seconds: st.metrics.wall_ms / 1000,
      energyWh: st.metrics.energy_wh,
      final: true,
    };
  }
  const produced = st.reasoningDeltas + st.answerDeltas;
  const genSecs = c.firstTokenAt !== null ? (now - c.firstTokenAt) / 1000 : 0;
  return {
    // Started and first token in one frame: no honest estimate until the core's figure.
    ttftMs: c.startedAt !== null && c.firstTokenAt !== null && c.firstTokenAt > c.startedAt ? c.firstTokenAt - c.startedAt : null,
    tokensPerSecond: genSecs > 0.2 && produced > 1 ? (produced - 1) / genSecs : null,
    thinkingTokens: st.reasoningDeltas,
    answerTokens: st.answerDeltas,
    seconds: c.startedAt !== null ? (now - c.startedAt) / 1000 : null,
    energyWh: null,
    final: false,
  };
}

export type ColumnPhase = 'waiting' | 'loading' | 'thinking' | 'answering' | 'done' | 'cancelled' | 'error';

export function columnPhase(c: ColumnRun): ColumnPhase {
  const st = c.stream;
  if (c.figures?.status === 'error' || st.error) return 'error';
  if (c.figures?.status === 'cancelled' || st.stop_reason === 'cancelled') return 'cancelled';
  if (st.done || c.figures) return 'done';
  if (st.answerDeltas > 0) return 'answering';
  if (st.reasoningDeltas > 0) return 'thinking';
  if (st.started) return 'thinking';
  return c.loaded ? 'waiting' : 'loading';
}

/** The error a column ended with, if any. */
export function columnError(c: ColumnRun): string | null {
  if (c.figures?.error) return c.figures.error;
  if (c.stream.error && c.stream.error.code !== 'cancelled') return c.stream.error.message;
  return null;
}

/** The model file a column ran, when it may be shown. */
export function columnModelFile(run: CompareRunState, column: number): string | null {
  const revealed = run.revealed?.find((r) => r.column === column);
  if (revealed) return revealed.model;
  return run.columns[column]?.model ?? null;
}

/** The stored answer of a column (for "continue as chat"). */
export function columnMessageId(run: CompareRunState, column: number): string | null {
  return (
    run.revealed?.find((r) => r.column === column)?.message_id ??
    run.columns[column]?.figures?.message_id ??
    null
  );
}

export const VOTE_LABELS: Record<string, string> = {
  a_better: 'A is better',
  b_better: 'B is better',
  c_better: 'C is best',
  d_better: 'D is best',
  tie: 'Tie',
  both_bad: 'Both are bad',
};

const BEST: Vote[] = ['a_better', 'b_better', 'c_better', 'd_better'];

/** The "this one is best" votes a run of `n` columns offers, one per column (at most 4). */
export function bestVotes(n: number): { vote: Vote; column: number }[] {
  return BEST.slice(0, Math.max(0, Math.min(n, BEST.length))).map((vote, column) => ({ vote, column }));
}

/** What the vote bar says once voted, for 2 to 4 columns. */
export function voteLabel(v: string, n: number): string {
  if (v.startsWith('rank:')) return `Ranked ${v.slice(5).toUpperCase().replaceAll('>', ' > ').replaceAll('=', ' = ')}`;
  if (n > 2 && v === 'a_better') return 'A is best';
  if (n > 2 && v === 'b_better') return 'B is best';
  if (n > 2 && v === 'both_bad') return 'All are bad';
  return VOTE_LABELS[v] ?? v;
}
