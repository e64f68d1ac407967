import { describe, expect, it } from 'vitest';
import { applyCompare, bestVotes, columnName, columnPhase, initialRun, isHidden, liveFigures, voteLabel } from './compare';
import type { ColumnFigures, CompareOutput, ComparePlanEvent } from './types';

const plan = (blind: boolean): ComparePlanEvent => ({
  type: 'plan', run_id: 'r1', conversation_id: 'c1', user_message_id: 'u1', blind, sequential: false, reason: null,
  workers: 2, concurrency: 2, threads_per_worker: 2, memory_needed_bytes: 1, memory_budget_bytes: null,
  columns: [0, 1].map((i) => ({ column: i, label: blind ? `Model ${'AB'[i]}` : ['smol', 'gemma'][i], model: blind ? null : ['smol.gguf', 'gemma.gguf'][i], lane: i })),
});
const fig = (column: number, tps: number, wh: number): ColumnFigures => ({
  column, label: `Model ${'AB'[column]}`, model: null, status: 'done', error: null, stop_reason: 'eos', ttft_ms: 100 + column,
  tokens_per_second: tps, thinking_tokens: 3, answer_tokens: 4, completion_tokens: 7, seconds: 1.5, energy_wh: wh,
  energy_method: 'rapl', threads: 2, drafted_tokens: 0, accepted_tokens: 0, message_id: `m${column}`,
});

describe('compare reducer', () => {
  it('routes each column event to its column and keeps order', () => {
    const outs: CompareOutput[] = [
      plan(false),
      { type: 'loaded', lane: 0, columns: [0], pid: 1, threads: 2, load_ms: 5 },
      { column: 0, type: 'started', request_id: 'q0', model: 'smol', seed: 1, reasoning_format: 'none', prompt_tokens: 3, cached_prompt_tokens: 0 },
      { column: 1, type: 'reasoning', text: 'hmm ' },
      { column: 0, type: 'token', text: 'Hello ' },
      { column: 1, type: 'token', text: 'Bonjour' },
      { column: 0, type: 'token', text: 'world' },
    ];
    const s = applyCompare(initialRun(), outs, 1000);
    expect(s.columns.map((c) => c.stream.content)).toEqual(['Hello world', 'Bonjour']);
    expect(s.columns[1].stream.reasoning).toBe('hmm ');
    expect(s.columns[0].loaded).toBe(true);
    expect(s.columns[1].loaded).toBe(false);
    expect(columnName(s, 1)).toBe('gemma');
    expect(columnPhase(s.columns[0])).toBe('answering');
    expect(isHidden(s)).toBe(false);
    // Applying in two batches gives the same text as one.
    const a = applyCompare(applyCompare(initialRun(), outs.slice(0, 5), 1), outs.slice(5), 2);
    expect(a.columns.map((c) => c.stream.content)).toEqual(['Hello world', 'Bonjour']);
  });

  it('hides names while blind, reveals after the vote', () => {
    let s = applyCompare(initialRun(), [plan(true)], 0);
    expect(isHidden(s)).toBe(true);
    expect([columnName(s, 0), columnName(s, 1)]).toEqual(['Model A', 'Model B']);
    s = applyCompare(s, [{ type: 'summary', run_id: 'r1', blind: true, sequential: false, reason: null, columns: [fig(0, 10, 0.01), fig(1, 20, 0.005)], fastest: 1, cheapest: 1, generation_seconds: 2, aggregate_tokens_per_second: 30 }], 5);
    expect(s.done).toBe(true);
    expect(columnName(s, 0)).toBe('Model A');
    s = { ...s, revealed: [{ column: 0, model: 'gemma.gguf', sha256: null, message_id: 'm0' }, { column: 1, model: 'smol.gguf', sha256: null, message_id: 'm1' }] };
    expect(isHidden(s)).toBe(false);
    expect([columnName(s, 0), columnName(s, 1)]).toEqual(['gemma.gguf', 'smol.gguf']);
  });

  it('shows estimates while streaming and the core figures after the summary', () => {
    let s = applyCompare(initialRun(), [plan(false), { column: 0, type: 'started', request_id: 'q', model: 'm', seed: 1, reasoning_format: 'none', prompt_tokens: 1, cached_prompt_tokens: 0 }], 1000);
    s = applyCompare(s, [{ column: 0, type: 'token', text: 'a' }], 1250);
    s = applyCompare(s, [{ column: 0, type: 'token', text: 'b' }, { column: 0, type: 'token', text: 'c' }], 1500);
    const live = liveFigures(s.columns[0], 2250);
    expect(live.final).toBe(false);
    expect(live.ttftMs).toBe(250);
    expect(live.answerTokens).toBe(3);
    expect(live.tokensPerSecond).toBeCloseTo(2 / 1.0);
    expect(live.energyWh).toBeNull();
    s = applyCompare(s, [{ type: 'summary', run_id: 'r1', blind: false, sequential: false, reason: null, columns: [fig(0, 42, 0.02), fig(1, 30, 0.01)], fastest: 0, cheapest: 1, generation_seconds: 1, aggregate_tokens_per_second: 72 }], 3000);
    const f = liveFigures(s.columns[0], 9999);
    expect(f).toMatchObject({ final: true, tokensPerSecond: 42, energyWh: 0.02, ttftMs: 100 });
    expect(s.summary?.fastest).toBe(0);
    expect(s.summary?.cheapest).toBe(1);
    expect(columnPhase(s.columns[1])).toBe('done');
  });

  it('counts the tokens of joined deltas in the live figures, not the deltas', () => {
    // The app joins a frame's tokens into one event per column (conclave_core::frames).
    let s = applyCompare(initialRun(), [plan(false), { column: 0, type: 'started', request_id: 'q', model: 'm', seed: 1, reasoning_format: 'none', prompt_tokens: 1, cached_prompt_tokens: 0 }], 1000);
    s = applyCompare(s, [{ column: 0, type: 'reasoning', text: 'so', tokens: 1 }], 1100);
    s = applyCompare(s, [{ column: 0, type: 'reasoning', text: ' let me see', tokens: 24 }, { column: 0, type: 'token', text: 'Red, orange', tokens: 25 }], 1350);
    const live = liveFigures(s.columns[0], 2100);
    expect(live.thinkingTokens).toBe(25);
    expect(live.answerTokens).toBe(25);
    expect(live.tokensPerSecond).toBeCloseTo(49 / 1.0);
  });

  it('marks a failed column as error without touching the other', () => {
    const s = applyCompare(initialRun(), [plan(false), { column: 1, type: 'error', code: 'worker_crashed', message: 'killed' }, { column: 0, type: 'token', text: 'ok' }], 1);
    expect(columnPhase(s.columns[1])).toBe('error');
    expect(columnPhase(s.columns[0])).toBe('answering');
  });
});

describe('votes for 3–4 columns', () => {
  it('offers one "best" vote per column', () => {
    expect(bestVotes(2).map((b) => b.vote)).toEqual(['a_better', 'b_better']);
    expect(bestVotes(4)).toEqual([
      { vote: 'a_better', column: 0 },
      { vote: 'b_better', column: 1 },
      { vote: 'c_better', column: 2 },
      { vote: 'd_better', column: 3 },
    ]);
    expect(bestVotes(5)).toHaveLength(4);
  });
  it('says what was voted', () => {
    expect(voteLabel('a_better', 2)).toBe('A is better');
    expect(voteLabel('a_better', 3)).toBe('A is best');
    expect(voteLabel('c_better', 3)).toBe('C is best');
    expect(voteLabel('both_bad', 4)).toBe('All are bad');
    expect(voteLabel('rank:c>a=b', 3)).toBe('Ranked C > A = B');
  });
});
