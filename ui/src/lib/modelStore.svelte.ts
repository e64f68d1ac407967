// The models on disk and the one in memory (Svelte 5 runes): the list, the picker's choice
// and its fit estimates, and loading. The chat asks this store for a loaded model before
// it sends; the settings tell it when the context size the estimates assume has changed.
import * as api from './api';
import { fitWarning, initialModel } from './modelChoice';
import type { ApiError, FitEstimate, LoadedModel, ModelInfo } from './types';

const LAST_MODEL_KEY = 'conclave.lastModel';

export class ModelStore {
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

  get selectedModel(): ModelInfo | null {
    return this.models.find((m) => m.id === this.selectedModelId) ?? null;
  }

  async refreshModels(): Promise<void> {
    try {
      this.models = await api.listModels();
      this.modelsError = null;
      if (!this.selectedModelId) {
        let last: string | null = null;
        try {
          last = localStorage.getItem(LAST_MODEL_KEY);
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
  async refreshFits(nCtx: number): Promise<void> {
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

  /** Estimates made at another context size say nothing about this one. */
  refreshFitsIfContextChanged(nCtx: number): void {
    if (nCtx !== this.fitsAt) void this.refreshFits(nCtx);
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

  async loadModel(modelId: string): Promise<boolean> {
    const model = this.models.find((m) => m.id === modelId);
    this.selectedModelId = modelId;
    try {
      localStorage.setItem(LAST_MODEL_KEY, modelId);
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

  /** The core's `model-loaded` event: the picker shows the model the core now holds. */
  workerLoaded(modelId: string): void {
    if (this.loaded?.model_id !== modelId) this.selectedModelId = modelId;
  }

  workerCrashed(modelId: string): void {
    if (this.loaded?.model_id === modelId) this.loaded = null;
  }
}
