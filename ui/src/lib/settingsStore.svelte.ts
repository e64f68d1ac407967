// The chat settings the drawer edits and the next send uses. They live in localStorage
// (settings.ts); opening a conversation replaces them with the ones it was saved with.
import { loadSettings, saveSettings } from './settings';
import type { ModelStore } from './modelStore.svelte';
import type { ChatSettings } from './types';

export class SettingsStore {
  settings = $state<ChatSettings>(loadSettings());

  private readonly models: ModelStore;

  constructor(models: ModelStore) {
    this.models = models;
  }

  persist(): void {
    saveSettings($state.snapshot(this.settings) as ChatSettings);
    // The picker's fit estimates depend on the context size.
    this.models.refreshFitsIfContextChanged(this.settings.n_ctx);
  }
}
