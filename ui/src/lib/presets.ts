// Presets live in the history database (shared with the CLI, the API and exports). Older
// versions kept them in the webview's localStorage; those are moved over once.
import * as api from './api';
import { normalizeSettings } from './settings';
import type { ChatSettings, Preset } from './types';

export const LEGACY_PRESETS_KEY = 'conclave.presets.v1';

function storage(): Storage | null {
  try {
    return typeof localStorage === 'undefined' ? null : localStorage;
  } catch {
    return null;
  }
}

/**
 * Moves presets saved by an older version from localStorage into the database. The key is
 * removed only after every preset was saved, so a failure retries next time; a name the
 * database already has keeps the database's settings.
 */
export async function migrateLegacyPresets(existing: Preset[]): Promise<number> {
  const st = storage();
  const raw = st?.getItem(LEGACY_PRESETS_KEY);
  if (!st || !raw) return 0;
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    st.removeItem(LEGACY_PRESETS_KEY);
    return 0;
  }
  const have = new Set(existing.map((p) => p.name));
  let moved = 0;
  for (const [name, v] of Object.entries(obj ?? {})) {
    if (!name.trim() || have.has(name.trim())) continue;
    await api.savePreset(name, normalizeSettings(v));
    moved++;
  }
  st.removeItem(LEGACY_PRESETS_KEY);
  return moved;
}

/** The presets from the database, after moving any legacy ones in. */
export async function loadPresets(): Promise<Preset[]> {
  // A mocked shell may answer null; treat it as "none".
  const list = (await api.listPresets()) ?? [];
  if ((await migrateLegacyPresets(list)) > 0) return (await api.listPresets()) ?? [];
  return list;
}

/** Settings as stored, normalised for the form (older or hand-edited presets). */
export function presetSettings(p: Preset): ChatSettings {
  return normalizeSettings(JSON.parse(JSON.stringify(p.settings)));
}
