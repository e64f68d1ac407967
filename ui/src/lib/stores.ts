// The app's state, one store per domain, built once and wired together here. Components
// import the stores they need from this module; the compare screen's own store is
// compareStore.svelte.ts. Every IPC call goes through api.ts.
import * as api from './api';
import { AppStatusStore } from './appStatusStore.svelte';
import { ChatStore } from './chatStore.svelte';
import { HistoryStore } from './historyStore.svelte';
import { ModelStore } from './modelStore.svelte';
import { NavigationStore } from './navigationStore.svelte';
import { SearchStore } from './searchStore.svelte';
import { SettingsStore } from './settingsStore.svelte';

export const navigationStore = new NavigationStore();
export const appStatusStore = new AppStatusStore();
export const modelStore = new ModelStore();
export const settingsStore = new SettingsStore(modelStore);
export const searchStore = new SearchStore();
export const chatStore = new ChatStore({
  models: modelStore,
  settings: settingsStore,
  navigation: navigationStore,
  status: appStatusStore,
  historyChanged: () => void historyStore.refresh(),
});
export const historyStore = new HistoryStore(appStatusStore, chatStore);

function workerCrashed(modelId: string, message: string): void {
  modelStore.workerCrashed(modelId);
  appStatusStore.showError(`The model worker stopped: ${message}. Load the model again to continue.`);
  chatStore.workerCrashed(message);
}

/** Startup: what the app is, the core's events, then the models and the history. */
export async function startApp(): Promise<void> {
  if (!api.hasIpc()) {
    appStatusStore.ipcMissing = true;
    return;
  }
  void api.appInfo().then(
    (i) => (appStatusStore.info = i),
    () => {},
  );
  void api.onWorkerCrashed((e) => workerCrashed(e.model_id, e.message)).catch(() => {});
  void api.onModelLoaded((e) => modelStore.workerLoaded(e.model_id)).catch(() => {});
  await Promise.all([modelStore.refreshModels(), historyStore.refresh()]);
  void modelStore.refreshFits(settingsStore.settings.n_ctx);
}
