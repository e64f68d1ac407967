// What the app as a whole tells the user, apart from any one screen: whether the backend is
// there at all, its version and folders, and the banner for failures that have no place of
// their own (a crashed worker, a failed rename or export from the sidebar).
import type { AppInfo } from './types';

export interface Banner {
  kind: 'error' | 'info';
  text: string;
}

export class AppStatusStore {
  /** Outside Tauri (a plain browser tab) there is nothing to call. */
  ipcMissing = $state(false);
  info = $state<AppInfo | null>(null);
  banner = $state<Banner | null>(null);

  showError(text: string): void {
    this.banner = { kind: 'error', text };
  }
}
