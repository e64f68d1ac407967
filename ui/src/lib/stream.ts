// Streaming: deltas arrive at up to hundreds per second; they are queued and applied to
// the message once per animation frame.
import type { ChatEvent, Metrics, StopReason, Usage } from './types';

export interface StreamState {
  reasoning: string;
  content: string;
  /** Reasoning / answer tokens received (an event holds `tokens` of them, 1 when unsaid). */
  reasoningDeltas: number;
  answerDeltas: number;
  started: boolean;
  seed: number | null;
  done: boolean;
  stop_reason: StopReason | null;
  usage: Usage | null;
  metrics: Metrics | null;
  error: { code: string; message: string } | null;
}

export function initialStream(): StreamState {
  return {
    reasoning: '',
    content: '',
    reasoningDeltas: 0,
    answerDeltas: 0,
    started: false,
    seed: null,
    done: false,
    stop_reason: null,
    usage: null,
    metrics: null,
    error: null,
  };
}

/** Pure reducer: applies a batch of events (in order) and returns the new state. */
export function applyEvents(state: StreamState, events: readonly ChatEvent[]): StreamState {
  if (events.length === 0) return state;
  const s: StreamState = { ...state };
  // Join deltas once per batch instead of growing the string per event.
  let reasoning: string[] | null = null;
  let content: string[] | null = null;
  for (const e of events) {
    switch (e.type) {
      case 'started':
        s.started = true;
        s.seed = e.seed;
        break;
      case 'reasoning':
        if (s.done) break;
        (reasoning ??= []).push(e.text);
        // The app joins a frame's tokens into one event and says how many it holds.
        s.reasoningDeltas += e.tokens ?? 1;
        break;
      case 'token':
        if (s.done) break;
        (content ??= []).push(e.text);
        s.answerDeltas += e.tokens ?? 1;
        break;
      case 'done':
        s.done = true;
        s.stop_reason = e.stop_reason;
        s.usage = e.usage;
        s.metrics = e.metrics;
        break;
      case 'error':
        s.done = true;
        s.error = { code: e.code, message: e.message };
        break;
    }
  }
  if (reasoning) s.reasoning = state.reasoning + reasoning.join('');
  if (content) s.content = state.content + content.join('');
  return s;
}

type Scheduler = (cb: () => void) => unknown;

const defaultScheduler: Scheduler = (cb) =>
  typeof requestAnimationFrame === 'function'
    ? requestAnimationFrame(() => cb())
    : setTimeout(cb, 16);

/** Queues items and hands them over in one batch per frame. */
export class FrameBatcher<T> {
  private queue: T[] = [];
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly flushFn: (batch: T[]) => void,
    private readonly schedule: Scheduler = defaultScheduler,
  ) {}

  push(item: T): void {
    if (this.closed) return;
    this.queue.push(item);
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(() => {
        this.scheduled = false;
        this.flush();
      });
    }
  }

  /** Applies everything queued now (e.g. on done, so the final text is never a frame late). */
  flush(): void {
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.flushFn(batch);
  }

  get pending(): number {
    return this.queue.length;
  }

  close(): void {
    this.flush();
    this.closed = true;
  }
}
