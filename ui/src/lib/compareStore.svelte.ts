// State of the side-by-side screen (Svelte 5 runes). The run itself is the core's; this
// holds the column setup, feeds the stream through the pure reducer in compare.ts, and
// calls vote/diff/cancel.
import * as api from './api';
import { FrameBatcher } from './stream';
import {
  MAX_COLUMNS,
  MIN_COLUMNS,
  applyCompare,
  columnMessageId,
  columnModelFile,
  columnSettings,
  initialRun,
  type ColumnConfig,
  type CompareRunState,
} from './compare';
import type {
  ApiError,
  ChatSettings,
  ColumnDiff,
  CompareOutput,
  CompareStarted,
  ModelInfo,
  Vote,
} from './types';

let keySeq = 0;

export class CompareStore {
  configs = $state<ColumnConfig[]>([]);
  prompt = $state('');
  blind = $state(false);
  tag = $state('');
  /** The prompt of the run on screen (the box is cleared on send). */
  sentPrompt = $state('');

  run = $state.raw<CompareRunState | null>(null);
  started = $state<CompareStarted | null>(null);
  error = $state<ApiError | null>(null);
  sending = $state(false);
  cancelling = $state(false);
  vote = $state<string | null>(null);
  voting = $state(false);

  diffOn = $state(false);
  diffPair = $state<[number, number]>([0, 1]);
  diff = $state.raw<ColumnDiff | null>(null);
  diffError = $state<ApiError | null>(null);

  /** Ticks while streaming so live figures move between frames. */
  now = $state(0);

  private batcher: FrameBatcher<CompareOutput> | null = null;
  private ticker: ReturnType<typeof setInterval> | null = null;

  running = $derived(this.sending || (this.run !== null && !this.run.done));

  /** Two columns to start with, on the first two usable models. */
  ensureColumns(models: ModelInfo[], base: ChatSettings): void {
    if (this.configs.length > 0) return;
    const ok = models.filter((m) => !m.error);
    for (let i = 0; i < MIN_COLUMNS; i++) this.configs.push(this.newConfig(ok[i]?.id ?? ok[0]?.id ?? null, base));
  }

  private newConfig(modelId: string | null, base: ChatSettings): ColumnConfig {
    return {
      key: ++keySeq,
      modelId,
      temperature: base.sampling.temperature,
      think: base.think,
      thinkBudget: base.think_budget,
      systemPrompt: base.system_prompt,
      speculative: base.speculative,
      draftModel: base.draft_model,
    };
  }

  canEdit = $derived(!this.running);

  addColumn(base: ChatSettings): void {
    if (!this.canEdit || this.configs.length >= MAX_COLUMNS) return;
    const last = this.configs[this.configs.length - 1];
    this.configs.push(last ? { ...$state.snapshot(last), key: ++keySeq } : this.newConfig(null, base));
  }

  removeColumn(key: number): void {
    if (!this.canEdit || this.configs.length <= MIN_COLUMNS) return;
    this.configs = this.configs.filter((c) => c.key !== key);
  }

  async send(base: ChatSettings): Promise<boolean> {
    const prompt = this.prompt.trim();
    if (!prompt || this.running) return false;
    if (this.configs.some((c) => !c.modelId)) {
      this.error = { code: 'no_model', message: 'Choose a model for every column first.' };
      return false;
    }
    this.error = null;
    this.vote = null;
    this.diff = null;
    this.diffError = null;
    this.diffOn = false;
    this.started = null;
    this.cancelling = false;
    this.sending = true;
    this.sentPrompt = prompt;
    this.run = initialRun();
    const batcher = new FrameBatcher<CompareOutput>((batch) => this.apply(batcher, batch));
    this.batcher?.close();
    this.batcher = batcher;
    this.startTicker();
    const request = {
      prompt,
      columns: this.configs.map((c) => ({
        model_id: c.modelId as string,
        settings: columnSettings(base, $state.snapshot(c) as ColumnConfig),
        label: null,
      })),
      options: {
        blind: this.blind,
        tag: this.tag.trim() || null,
        no_save: false,
        conversation_id: null,
        parent_id: null,
        memory_limit_bytes: null,
        sequential: false,
        cores: null,
        shuffle_seed: null,
        // The shell adds the Remote devices from Settings.
        rpc: [],
        gpu_layers: { mode: 'auto' as const },
      },
    };
    try {
      this.started = await api.startCompare(request, (e) => batcher.push(e));
      this.prompt = '';
      return true;
    } catch (e) {
      this.error = api.toApiError(e);
      this.run = null;
      this.stopTicker();
      return false;
    } finally {
      this.sending = false;
    }
  }

  private apply(batcher: FrameBatcher<CompareOutput>, batch: CompareOutput[]): void {
    if (batcher !== this.batcher || !this.run) return;
    this.now = performance.now();
    this.run = applyCompare(this.run, batch, this.now);
    if (this.run.done) {
      batcher.close();
      this.stopTicker();
      if (this.diffOn) void this.loadDiff();
    }
  }

  private startTicker(): void {
    this.stopTicker();
    this.now = performance.now();
    this.ticker = setInterval(() => (this.now = performance.now()), 250);
  }

  private stopTicker(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
  }

  async cancel(): Promise<void> {
    const handle = this.started?.handle;
    if (!handle || this.cancelling) return;
    this.cancelling = true;
    try {
      await api.cancelCompare(handle);
    } catch (e) {
      this.error = api.toApiError(e);
    }
  }

  async castVote(v: Vote): Promise<void> {
    const runId = this.started?.run_id;
    if (!runId || !this.run || !this.run.done || this.voting || this.vote) return;
    this.voting = true;
    try {
      const revealed = await api.voteCompare(runId, v);
      this.vote = v;
      this.run = { ...this.run, revealed };
    } catch (e) {
      this.error = api.toApiError(e);
    } finally {
      this.voting = false;
    }
  }

  async toggleDiff(): Promise<void> {
    this.diffOn = !this.diffOn;
    if (this.diffOn) await this.loadDiff();
  }

  async setDiffPair(a: number, b: number): Promise<void> {
    this.diffPair = [a, b];
    if (this.diffOn) await this.loadDiff();
  }

  /** Asks the core for the word diff of the chosen pair (once the run is over). */
  async loadDiff(): Promise<void> {
    const run = this.run;
    if (!run || !run.done) return;
    const [a, b] = this.diffPair;
    const ca = run.columns[a]?.stream;
    const cb = run.columns[b]?.stream;
    if (!ca || !cb) return;
    try {
      this.diff = await api.compareDiff(ca.content, ca.reasoning, cb.content, cb.reasoning);
      this.diffError = null;
    } catch (e) {
      this.diffError = api.toApiError(e);
    }
  }

  /** What "continue as chat" needs: the conversation, the answer and its model. */
  promotion(column: number, models: ModelInfo[]): { conversationId: string; messageId: string; modelId: string | null } | null {
    const run = this.run;
    const conversationId = this.started?.conversation_id;
    if (!run || !run.done || !conversationId) return null;
    const messageId = columnMessageId(run, column);
    const file = columnModelFile(run, column);
    if (!messageId || !file) return null;
    const model = models.find((m) => m.path.split(/[\\/]/).pop() === file);
    return { conversationId, messageId, modelId: model?.id ?? null };
  }

  reset(): void {
    this.batcher?.close();
    this.batcher = null;
    this.stopTicker();
    this.run = null;
    this.started = null;
    this.error = null;
    this.vote = null;
    this.diff = null;
    this.diffOn = false;
  }
}

export const compareStore = new CompareStore();
