// App state (Svelte 5 runes). Components read it; every IPC call goes through api.ts.
import * as api from './api';
import { FrameBatcher, applyEvents, initialStream, type StreamState } from './stream';
import { indexTree, pathTo, siblingLeaf, deepestLeaf } from './tree';
import { loadSettings, saveSettings } from './settings';
import { fitWarning, initialModel } from './modelChoice';
import type {
  ApiError,
  AppInfo,
  ChatEvent,
  ChatRequest,
  ChatSettings,
  ConversationSummary,
  ConversationView,
  FitEstimate,
  LoadedModel,
  MessageView,
  ModelInfo,
  SearchHit,
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

/** The screens the sidebar switches between. */
export type View = 'chat' | 'compare' | 'leaderboard' | 'models';

export class AppStore {
  view = $state<View>('chat');
  info = $state<AppInfo | null>(null);
  ipcMissing = $state(false);

  models = $state<ModelInfo[]>([]);
  modelsLoaded = $state(false);
  modelsError = $state<ApiError | null>(null);
  selectedModelId = $state<string | null>(null);
  /** Memory estimate per model id at the context the settings ask for (null: none). */
  fits = $state<Record<string, FitEstimate | null>>({});
  /** The context size `fits` was estimated at. */
  private fitsAt = 0;
  /** A model the user chose although it will not fit: the picker asks before loading. */
  pendingLoad = $state<{ modelId: string; warning: string } | null>(null);
  loaded = $state<LoadedModel | null>(null);
  loading = $state<{ modelId: string; fraction: number } | null>(null);
  loadError = $state<ApiError | null>(null);

  conversations = $state<ConversationSummary[]>([]);
  conversationsError = $state<ApiError | null>(null);
  conversationsLoaded = $state(false);

  conversationId = $state<string | null>(null);
  title = $state('');
  messages = $state<UiMessage[]>([]);
  currentLeafId = $state<string | null>(null);
  chatError = $state<ApiError | null>(null);
  openingConversation = $state(false);

  stream = $state.raw<ActiveStream | null>(null);
  /** Bumped once per applied frame; the chat view scrolls on it. */
  frame = $state(0);

  settings = $state<ChatSettings>(loadSettings());

  searchQuery = $state('');
  searchIncludeReasoning = $state(false);
  searchResults = $state<SearchHit[]>([]);
  searchError = $state<ApiError | null>(null);
  searching = $state(false);

  banner = $state<{ kind: 'error' | 'info'; text: string } | null>(null);
  highlightMessageId = $state<string | null>(null);

  index = $derived(indexTree(this.messages));
  path = $derived(pathTo(this.index, this.currentLeafId));
  streaming = $derived(this.stream !== null);

  get selectedModel(): ModelInfo | null {
    return this.models.find((m) => m.id === this.selectedModelId) ?? null;
  }

  // ---------- startup ----------

  async init(): Promise<void> {
    if (!api.hasIpc()) {
      this.ipcMissing = true;
      return;
    }
    void api.appInfo().then(
      (i) => (this.info = i),
      () => {},
    );
    void api.onWorkerCrashed((e) => this.onWorkerCrashed(e.model_id, e.message)).catch(() => {});
    void api
      .onModelLoaded((e) => {
        if (this.loaded?.model_id !== e.model_id) {
          this.selectedModelId = e.model_id;
        }
      })
      .catch(() => {});
    await Promise.all([this.refreshModels(), this.refreshConversations()]);
    void this.refreshFits();
  }

  async refreshModels(): Promise<void> {
    try {
      this.models = await api.listModels();
      this.modelsError = null;
      if (!this.selectedModelId) {
        let last: string | null = null;
        try {
          last = localStorage.getItem('conclave.lastModel');
        } catch {
          /* ignore */
        }
        this.selectedModelId = initialModel(this.models, last);
      }
    } catch (e) {
      this.modelsError = api.toApiError(e);
    } finally {
      this.modelsLoaded = true;
    }
  }

  /** Fills `fits` so the picker can show fit before anything is loaded. */
  async refreshFits(): Promise<void> {
    const nCtx = this.settings.n_ctx;
    this.fitsAt = nCtx;
    const out: Record<string, FitEstimate | null> = {};
    for (const m of this.models.filter((m) => !m.error)) {
      try {
        out[m.id] = (await api.modelDetails(m.id, nCtx)).fit;
      } catch {
        out[m.id] = null;
      }
    }
    this.fits = out;
  }

  /** The picker's choice: loads, or first asks when the estimate says it will not fit. */
  chooseModel(modelId: string): void {
    const m = this.models.find((x) => x.id === modelId);
    const warning = m ? fitWarning(m.name, this.fits[modelId]) : null;
    if (warning && this.loaded?.model_id !== modelId) {
      this.pendingLoad = { modelId, warning };
      return;
    }
    this.pendingLoad = null;
    void this.loadModel(modelId);
  }

  confirmPendingLoad(): void {
    const p = this.pendingLoad;
    this.pendingLoad = null;
    if (p) void this.loadModel(p.modelId);
  }

  async refreshConversations(): Promise<void> {
    try {
      this.conversations = await api.listConversations(200, null);
      this.conversationsError = null;
    } catch (e) {
      this.conversationsError = api.toApiError(e);
    } finally {
      this.conversationsLoaded = true;
    }
  }

  // ---------- models ----------

  async loadModel(modelId: string): Promise<boolean> {
    const model = this.models.find((m) => m.id === modelId);
    this.selectedModelId = modelId;
    try {
      localStorage.setItem('conclave.lastModel', modelId);
    } catch {
      /* ignore */
    }
    if (model?.error) {
      this.loadError = { code: 'broken_model', message: `${model.name}: ${model.error}` };
      return false;
    }
    if (this.loaded?.model_id === modelId) return true;
    this.loadError = null;
    this.loading = { modelId, fraction: 0 };
    try {
      const lm = await api.loadModel(modelId, (p) => {
        if (this.loading?.modelId === modelId) {
          this.loading = { modelId, fraction: Math.max(0, Math.min(1, p.fraction)) };
        }
      });
      // A newer choice may have been made meanwhile.
      if (this.loading?.modelId === modelId) {
        this.loaded = lm;
        this.loading = null;
      }
      return true;
    } catch (e) {
      if (this.loading?.modelId === modelId) this.loading = null;
      this.loadError = api.toApiError(e);
      return false;
    }
  }

  async openModelFile(): Promise<void> {
    let path: string | null = null;
    try {
      const { open } = await import('@tauri-apps/plugin-dialog');
      const picked = await open({
        multiple: false,
        directory: false,
        filters: [{ name: 'GGUF', extensions: ['gguf'] }],
      });
      path = typeof picked === 'string' ? picked : null;
    } catch (e) {
      this.loadError = api.toApiError(e);
      return;
    }
    if (!path) return;
    try {
      const info = await api.openModelFile(path);
      if (!this.models.some((m) => m.id === info.id)) this.models = [...this.models, info];
      if (info.error) {
        this.selectedModelId = info.id;
        this.loadError = { code: 'broken_model', message: `${info.name}: ${info.error}` };
        return;
      }
      await this.loadModel(info.id);
    } catch (e) {
      this.loadError = api.toApiError(e);
    }
  }

  private onWorkerCrashed(modelId: string, message: string): void {
    if (this.loaded?.model_id === modelId) this.loaded = null;
    this.banner = { kind: 'error', text: `The model worker stopped: ${message}. Load the model again to continue.` };
    const s = this.stream;
    if (s) {
      s.batcher.push({ type: 'error', code: 'worker_crashed', message });
      s.batcher.flush();
    }
  }

  // ---------- conversations ----------

  newChat(): void {
    if (this.streaming) return;
    this.conversationId = null;
    this.title = '';
    this.messages = [];
    this.currentLeafId = null;
    this.chatError = null;
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
    this.view = 'chat';
    this.chatError = null;
    this.openingConversation = true;
    try {
      const view = await api.getConversation(id);
      if (this.conversationId !== view.id) this.messages = [];
      this.adopt(view);
      if (view.settings) {
        this.settings = { ...view.settings, sampling: { ...view.settings.sampling } };
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
      this.chatError = api.toApiError(e);
    } finally {
      this.openingConversation = false;
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

  async renameConversation(id: string, title: string): Promise<void> {
    const t = title.trim();
    if (!t) return;
    try {
      await api.renameConversation(id, t);
      this.conversations = this.conversations.map((c) => (c.id === id ? { ...c, title: t } : c));
      if (this.conversationId === id) this.title = t;
    } catch (e) {
      this.banner = { kind: 'error', text: `Rename failed: ${api.toApiError(e).message}` };
    }
  }

  async deleteConversation(id: string): Promise<void> {
    try {
      await api.deleteConversation(id);
      this.conversations = this.conversations.filter((c) => c.id !== id);
      if (this.conversationId === id) this.newChat();
    } catch (e) {
      this.banner = { kind: 'error', text: `Delete failed: ${api.toApiError(e).message}` };
    }
  }

  async exportConversation(id: string, format: 'md' | 'json'): Promise<string | null> {
    try {
      return await api.exportConversation(id, format);
    } catch (e) {
      this.banner = { kind: 'error', text: `Export failed: ${api.toApiError(e).message}` };
      return null;
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
        this.chatError = api.toApiError(e);
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
      void this.refreshConversations();
    } catch (e) {
      this.chatError = api.toApiError(e);
    }
  }

  // ---------- chat ----------

  private async ensureModel(): Promise<string | null> {
    if (this.loaded && (!this.selectedModelId || this.loaded.model_id === this.selectedModelId)) {
      return this.loaded.model_id;
    }
    const id = this.selectedModelId;
    if (!id) {
      this.chatError = {
        code: 'no_model',
        message: this.models.length
          ? 'Choose a model in the picker above first.'
          : 'No model yet. Run `make models` or open a GGUF file first.',
      };
      return null;
    }
    return (await this.loadModel(id)) ? id : null;
  }

  async send(content: string): Promise<boolean> {
    const text = content.trim();
    if (!text || this.streaming) return false;
    const leaf = this.path.length ? this.path[this.path.length - 1] : null;
    return this.run({ content: text, parent: leaf?.id ?? null, regenerateOf: null, editOf: null });
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
    this.chatError = null;
    this.banner = null;
    const modelId = await this.ensureModel();
    if (!modelId || this.stream) return false;
    const modelName = this.loaded?.name ?? this.selectedModel?.name ?? null;
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

    const settings: ChatSettings = $state.snapshot(this.settings) as ChatSettings;
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
      if (isNew) void this.refreshConversations();
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
      void this.refreshConversations();
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
        this.chatError = api.toApiError(e);
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

  // ---------- search ----------

  private searchSeq = 0;

  async runSearch(): Promise<void> {
    const q = this.searchQuery.trim();
    const seq = ++this.searchSeq;
    if (!q) {
      this.searchResults = [];
      this.searchError = null;
      this.searching = false;
      return;
    }
    this.searching = true;
    try {
      const hits = await api.search(q, this.searchIncludeReasoning);
      if (seq === this.searchSeq) {
        this.searchResults = hits;
        this.searchError = null;
      }
    } catch (e) {
      if (seq === this.searchSeq) this.searchError = api.toApiError(e);
    } finally {
      if (seq === this.searchSeq) this.searching = false;
    }
  }

  // ---------- settings ----------

  persistSettings(): void {
    saveSettings($state.snapshot(this.settings) as ChatSettings);
    // The picker's fit estimates depend on the context size.
    if (this.settings.n_ctx !== this.fitsAt) void this.refreshFits();
  }
}

export const store = new AppStore();
