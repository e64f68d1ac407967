// The conversation on the chat screen (Svelte 5 runes): its message tree and the branch
// shown, sending, regenerating and editing, and the answer streaming in. Frames of the
// stream go through the pure reducer in stream.ts; the tree helpers are tree.ts.
import * as api from './api';
import { FrameBatcher, applyEvents, initialStream, type StreamState } from './stream';
import { indexTree, pathTo, siblingLeaf, deepestLeaf } from './tree';
import { readAheadEnabled } from './readAhead';
import type { AppStatusStore } from './appStatusStore.svelte';
import type { ModelStore } from './modelStore.svelte';
import type { NavigationStore } from './navigationStore.svelte';
import type { SettingsStore } from './settingsStore.svelte';
import type {
  ApiError,
  ChatEvent,
  ChatRequest,
  ChatSettings,
  ConversationSummary,
  ConversationView,
  MessageView,
} from './types';

/** A message as the UI holds it: `key` stays stable while temporary ids become real ones. */
export type UiMessage = MessageView & { key: string; live?: StreamMeta };

export interface StreamMeta {
  startedAt: number;
  answerAt: number | null;
  reasoningDeltas: number;
  answerDeltas: number;
}

interface ActiveStream {
  requestId: string | null;
  assistantKey: string;
  cancelled: boolean;
  state: StreamState;
  batcher: FrameBatcher<ChatEvent>;
}

let tempCounter = 0;
const tempId = (p: string) => `tmp-${p}-${++tempCounter}`;

export interface ChatDeps {
  models: ModelStore;
  settings: SettingsStore;
  navigation: NavigationStore;
  status: AppStatusStore;
  /**
   * A send or a delete changed what the sidebar lists. A callback rather than the history
   * store itself, because that store needs this one (renaming the open conversation).
   */
  historyChanged: () => void;
}

export class ChatStore {
  conversationId = $state<string | null>(null);
  title = $state('');
  messages = $state<UiMessage[]>([]);
  currentLeafId = $state<string | null>(null);
  error = $state<ApiError | null>(null);
  opening = $state(false);
  /** The message a search hit pointed at. */
  highlightMessageId = $state<string | null>(null);

  stream = $state.raw<ActiveStream | null>(null);
  /** Bumped once per applied frame; the chat view scrolls on it. */
  frame = $state(0);

  index = $derived(indexTree(this.messages));
  path = $derived(pathTo(this.index, this.currentLeafId));
  streaming = $derived(this.stream !== null);

  private readonly deps: ChatDeps;

  constructor(deps: ChatDeps) {
    this.deps = deps;
  }

  // ---------- conversations ----------

  newChat(): void {
    if (this.streaming) return;
    this.conversationId = null;
    this.title = '';
    this.messages = [];
    this.currentLeafId = null;
    this.error = null;
    this.highlightMessageId = null;
  }

  private adopt(view: ConversationView): void {
    const keys = new Map(this.messages.map((m) => [m.id, m.key]));
    this.conversationId = view.id;
    this.title = view.title;
    this.messages = view.messages.map((m) => ({ ...m, key: keys.get(m.id) ?? m.id }));
    this.currentLeafId = view.current_leaf_id;
  }

  async openConversation(id: string, focusMessageId: string | null = null): Promise<void> {
    if (this.streaming && id !== this.conversationId) return;
    this.deps.navigation.view = 'chat';
    this.error = null;
    this.opening = true;
    try {
      const view = await api.getConversation(id);
      if (this.conversationId !== view.id) this.messages = [];
      this.adopt(view);
      if (view.settings) {
        this.deps.settings.settings = { ...view.settings, sampling: { ...view.settings.sampling } };
      }
      if (focusMessageId && this.index.byId.has(focusMessageId)) {
        const onPath = this.path.some((m) => m.id === focusMessageId);
        if (!onPath) {
          const leaf = deepestLeaf(this.index, focusMessageId);
          this.currentLeafId = leaf;
          void api.setCurrentLeaf(id, leaf).catch(() => {});
        }
        this.highlightMessageId = focusMessageId;
      } else {
        this.highlightMessageId = null;
      }
    } catch (e) {
      this.error = api.toApiError(e);
    } finally {
      this.opening = false;
    }
  }

  private async reloadCurrent(): Promise<void> {
    const id = this.conversationId;
    if (!id) return;
    try {
      const view = await api.getConversation(id);
      if (this.conversationId === id && !this.stream) this.adopt(view);
    } catch {
      /* keep what we have */
    }
  }

  /** Moves to the previous/next conversation in the sidebar order. */
  switchConversation(delta: number, ordered: ConversationSummary[]): void {
    if (ordered.length === 0) return;
    const i = ordered.findIndex((c) => c.id === this.conversationId);
    const next = i < 0 ? (delta > 0 ? 0 : ordered.length - 1) : i + delta;
    if (next < 0 || next >= ordered.length) return;
    void this.openConversation(ordered[next].id);
  }

  // ---------- branches ----------

  async switchBranch(messageId: string, delta: number): Promise<void> {
    if (this.streaming) return;
    const leaf = siblingLeaf(this.index, messageId, delta);
    if (!leaf) return;
    this.currentLeafId = leaf;
    if (this.conversationId) {
      try {
        await api.setCurrentLeaf(this.conversationId, leaf);
      } catch (e) {
        this.error = api.toApiError(e);
      }
    }
  }

  async deleteMessage(id: string): Promise<void> {
    if (this.streaming) return;
    const msg = this.index.byId.get(id);
    try {
      await api.deleteMessage(id);
      // Drop the subtree locally, then follow what the store says.
      const gone = new Set<string>([id]);
      let grew = true;
      while (grew) {
        grew = false;
        for (const m of this.messages) {
          if (m.parent_id && gone.has(m.parent_id) && !gone.has(m.id)) {
            gone.add(m.id);
            grew = true;
          }
        }
      }
      this.messages = this.messages.filter((m) => !gone.has(m.id));
      if (this.currentLeafId && gone.has(this.currentLeafId)) {
        this.currentLeafId = msg?.parent_id ? deepestLeaf(this.index, msg.parent_id) : null;
      }
      await this.reloadCurrent();
      this.deps.historyChanged();
    } catch (e) {
      this.error = api.toApiError(e);
    }
  }

  // ---------- sending ----------

  private async ensureModel(): Promise<string | null> {
    const models = this.deps.models;
    if (models.loaded && (!models.selectedModelId || models.loaded.model_id === models.selectedModelId)) {
      return models.loaded.model_id;
    }
    const id = models.selectedModelId;
    if (!id) {
      this.error = {
        code: 'no_model',
        message: models.models.length
          ? 'Choose a model in the picker above first.'
          : 'No model yet. Run `make models` or open a GGUF file first.',
      };
      return null;
    }
    return (await models.loadModel(id)) ? id : null;
  }

  async send(content: string): Promise<boolean> {
    const text = content.trim();
    if (!text || this.streaming) return false;
    const leaf = this.path.length ? this.path[this.path.length - 1] : null;
    return this.run({ content: text, parent: leaf?.id ?? null, regenerateOf: null, editOf: null });
  }

  /** What the last warm-up read: the same draft on the same branch is not read twice, nor
   * its text alone after its whole turn. */
  private warmed = '';
  private warmedWhole = false;
  /** A warm-up is in flight; `readAheadNext` is the draft to read once it is done. */
  private readAheadBusy = false;
  private readAheadNext: { draft: string; wholeTurn: boolean } | null = null;

  /**
   * Reads `draft` ahead as soon as the model is free (the Composer calls this on every
   * keystroke): one warm-up in flight at a time, and when it is done, the latest draft, not
   * each one typed meanwhile. So the cache stays at most one warm-up behind the typing, and
   * a message sent right after its last keystroke decodes only the last few words. Each
   * warm-up decodes only what changed since the one before (the worker keeps the shared
   * prefix), so this reads little more than the message itself. `wholeTurn` when typing
   * has paused: the turn's end-of-turn markup and generation prompt are read too, so that
   * Enter decodes a single token (typing on reads those few tokens again).
   */
  async readAhead(draft: string, wholeTurn = false): Promise<void> {
    this.readAheadNext = { draft, wholeTurn };
    if (this.readAheadBusy) return;
    this.readAheadBusy = true;
    try {
      while (this.readAheadNext !== null) {
        const next = this.readAheadNext;
        this.readAheadNext = null;
        await this.warm(next.draft, next.wholeTurn);
      }
    } finally {
      this.readAheadBusy = false;
    }
  }

  /**
   * Reads the message being typed into the loaded model's cache (through `readAhead`), so that sending it decodes only what was typed since; in a
   * conversation whose cache is gone, the history too. With nothing typed (a conversation
   * opened, an answer ended, a model loaded), the history and the new turn's header are
   * read, so that a message pasted and sent at once decodes only itself. Only for the
   * model that is loaded and selected, and never while an answer streams. A failure here
   * is not the user's concern: the send reports its own.
   */
  async warm(draft: string, wholeTurn = false): Promise<void> {
    const text = draft.trim();
    const { loaded, selectedModelId } = this.deps.models;
    if (this.streaming || !loaded || !readAheadEnabled()) return;
    if (selectedModelId && loaded.model_id !== selectedModelId) return;
    const leaf = this.path.length ? this.path[this.path.length - 1] : null;
    // A message that is not saved yet has a temporary id the core does not know.
    if (leaf?.id.startsWith('tmp-')) return;
    const settings = $state.snapshot(this.deps.settings.settings) as ChatSettings;
    // With nothing typed there is no turn to end: the header is all there is to read.
    const whole = wholeTurn && text.length > 0;
    const key = JSON.stringify([this.conversationId, leaf?.id ?? null, loaded.model_id, text, settings]);
    if (key === this.warmed && (this.warmedWhole || !whole)) return;
    this.warmed = key;
    this.warmedWhole = whole;
    const request: ChatRequest = {
      conversation_id: this.conversationId,
      parent_id: leaf?.id ?? null,
      content: text,
      model_id: loaded.model_id,
      settings,
      regenerate_of: null,
      edit_of: null,
    };
    try {
      await api.warmPrompt(request, whole);
    } catch {
      this.warmed = '';
    }
  }

  async regenerate(assistantId: string): Promise<void> {
    const a = this.index.byId.get(assistantId);
    if (!a || this.streaming) return;
    await this.run({ content: '', parent: a.parent_id, regenerateOf: assistantId, editOf: null });
  }

  async editAndResend(userId: string, content: string): Promise<void> {
    const u = this.index.byId.get(userId);
    const text = content.trim();
    if (!u || !text || this.streaming) return;
    await this.run({ content: text, parent: u.parent_id, regenerateOf: null, editOf: userId });
  }

  private async run(o: {
    content: string;
    parent: string | null;
    regenerateOf: string | null;
    editOf: string | null;
  }): Promise<boolean> {
    this.error = null;
    this.deps.status.banner = null;
    const modelId = await this.ensureModel();
    if (!modelId || this.stream) return false;
    const modelName = this.deps.models.loaded?.name ?? this.deps.models.selectedModel?.name ?? null;
    const now = new Date().toISOString();

    // Optimistic messages, shown at once.
    let userId: string | null = null;
    let assistantParent: string | null = o.parent;
    if (!o.regenerateOf) {
      userId = tempId('user');
      this.messages.push({
        key: userId,
        id: userId,
        parent_id: o.parent,
        role: 'user',
        content: o.content,
        reasoning: null,
        status: 'complete',
        error: null,
        model_name: null,
        created_at: now,
        metrics: null,
        usage: null,
        stop_reason: null,
      });
      assistantParent = userId;
    }
    const assistantKey = tempId('assistant');
    this.messages.push({
      key: assistantKey,
      id: assistantKey,
      parent_id: assistantParent,
      role: 'assistant',
      content: '',
      reasoning: null,
      status: 'streaming',
      error: null,
      model_name: modelName,
      created_at: new Date(Date.parse(now) + 1).toISOString(),
      metrics: null,
      usage: null,
      stop_reason: null,
      live: { startedAt: performance.now(), answerAt: null, reasoningDeltas: 0, answerDeltas: 0 },
    });
    this.currentLeafId = assistantKey;
    this.frame++;

    const active: ActiveStream = {
      requestId: null,
      assistantKey,
      cancelled: false,
      state: initialStream(),
      batcher: new FrameBatcher<ChatEvent>((batch) => this.applyBatch(active, batch)),
    };
    this.stream = active;

    const settings: ChatSettings = $state.snapshot(this.deps.settings.settings) as ChatSettings;
    const request: ChatRequest = {
      conversation_id: this.conversationId,
      parent_id: o.parent,
      content: o.regenerateOf ? '' : o.content,
      model_id: modelId,
      settings,
      regenerate_of: o.regenerateOf,
      edit_of: o.editOf,
    };
    try {
      const handle = await api.startChat(request, (e) => active.batcher.push(e));
      active.requestId = handle.request_id;
      const isNew = this.conversationId === null;
      this.conversationId = handle.conversation_id;
      // Real ids replace the temporary ones; keys stay, so nothing remounts.
      const assistant = this.findByKey(assistantKey);
      if (userId) {
        const u = this.findByKey(userId);
        if (u) u.id = handle.user_message_id;
      }
      if (assistant) {
        assistant.id = handle.assistant_message_id;
        assistant.parent_id = handle.user_message_id;
      }
      if (this.currentLeafId === assistantKey) this.currentLeafId = handle.assistant_message_id;
      if (isNew) this.deps.historyChanged();
      if (active.cancelled) void api.cancel(handle.request_id).catch(() => {});
    } catch (e) {
      const err = api.toApiError(e);
      active.batcher.push({ type: 'error', code: err.code, message: err.message });
      active.batcher.flush();
    }
    return true;
  }

  private findByKey(key: string): UiMessage | undefined {
    return this.messages.find((m) => m.key === key);
  }

  private applyBatch(active: ActiveStream, batch: ChatEvent[]): void {
    const next = applyEvents(active.state, batch);
    active.state = next;
    const m = this.findByKey(active.assistantKey);
    if (m) {
      if (next.reasoning !== (m.reasoning ?? '')) m.reasoning = next.reasoning;
      if (next.content !== m.content) m.content = next.content;
      if (m.live) {
        m.live.reasoningDeltas = next.reasoningDeltas;
        m.live.answerDeltas = next.answerDeltas;
        if (m.live.answerAt === null && next.content.length > 0) m.live.answerAt = performance.now();
      }
      if (next.done) {
        if (next.error && !(active.cancelled && next.error.code === 'cancelled')) {
          m.status = 'error';
          m.error = `${next.error.message}${next.error.code ? ` (${next.error.code})` : ''}`;
        } else {
          m.status = next.stop_reason === 'cancelled' || active.cancelled ? 'cancelled' : 'complete';
          if (next.metrics) m.metrics = next.metrics;
          if (next.usage) m.usage = next.usage;
          m.stop_reason = next.stop_reason ?? (active.cancelled ? 'cancelled' : null);
        }
      }
    }
    this.frame++;
    if (next.done && this.stream === active) {
      active.batcher.close();
      this.stream = null;
      this.deps.historyChanged();
      void this.reloadCurrent();
    }
  }

  async stop(): Promise<void> {
    const s = this.stream;
    if (!s || s.cancelled) return;
    s.cancelled = true;
    if (s.requestId) {
      try {
        await api.cancel(s.requestId);
      } catch (e) {
        this.error = api.toApiError(e);
      }
    }
    // The engine answers with done(cancelled); if it never does, unblock after a while.
    setTimeout(() => {
      if (this.stream === s) {
        s.batcher.push({ type: 'error', code: 'cancelled', message: 'Stopped' });
        s.batcher.flush();
      }
    }, 5000);
  }

  /** The answer in flight ends here, as an error, rather than waiting on a worker that is gone. */
  workerCrashed(message: string): void {
    const s = this.stream;
    if (s) {
      s.batcher.push({ type: 'error', code: 'worker_crashed', message });
      s.batcher.flush();
    }
  }
}
