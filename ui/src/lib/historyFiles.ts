// Save and import of chat history through real files. The shell writes and reads the file
// (the webview's <a download> saved nothing in the app), and the messages below are built
// from what the core reports, so "Saved" is only said after bytes reached the disk.
import * as api from './api';
import { formatBytes } from './format';
import type { ExportFileReport, ExportFormat, HistoryImportReport } from './types';

export type FileOutcome = { kind: 'saved' | 'imported' | 'cancelled' | 'error'; text: string };

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function exportReportText(r: ExportFileReport): string {
  return `Saved ${plural(r.conversations, 'conversation')} (${formatBytes(r.bytes)}) to ${r.path}`;
}

export function importReportText(r: HistoryImportReport): string {
  const head =
    r.conversations === 0 && r.skipped_existing.length === 0
      ? 'The file holds no conversations'
      : `Imported ${plural(r.conversations, 'conversation')} (${plural(r.messages, 'message')})`;
  const presets = r.presets ? `, ${plural(r.presets, 'preset')}` : '';
  const skipped = r.skipped_existing.length;
  return skipped === 0 ? head + presets : `${head}${presets}; skipped ${skipped} already in your history`;
}

/** A file name the save dialog proposes: the title without characters file systems reject. */
export function suggestedName(title: string, format: ExportFormat): string {
  const base = title.replace(/[^\w\- ]+/g, '').trim() || 'conversation';
  return `${base}.${format}`;
}

/** The dialog functions, injectable so tests need no shell. */
export interface Dialogs {
  save(o: { defaultPath: string; filters: { name: string; extensions: string[] }[] }): Promise<string | null>;
  open(o: { multiple: false; directory: false; filters: { name: string; extensions: string[] }[] }): Promise<string | string[] | null>;
}

async function dialogs(): Promise<Dialogs> {
  const d = await import('@tauri-apps/plugin-dialog');
  return { save: (o) => d.save(o), open: (o) => d.open(o) };
}

/** Asks where to save, then exports one conversation (or all when `id` is null). */
export async function saveToFile(
  id: string | null,
  format: ExportFormat,
  title: string,
  d?: Dialogs,
): Promise<FileOutcome> {
  try {
    const dlg = d ?? (await dialogs());
    const path = await dlg.save({
      defaultPath: suggestedName(title, format),
      filters: [format === 'md' ? { name: 'Markdown', extensions: ['md'] } : { name: 'JSON', extensions: ['json'] }],
    });
    if (!path) return { kind: 'cancelled', text: 'Not saved' };
    return { kind: 'saved', text: exportReportText(await api.exportHistoryFile(id, format, path)) };
  } catch (e) {
    return { kind: 'error', text: `Not saved: ${api.toApiError(e).message}` };
  }
}

/** Asks for a JSON export and imports it. */
export async function importFromFile(d?: Dialogs): Promise<FileOutcome> {
  try {
    const dlg = d ?? (await dialogs());
    const picked = await dlg.open({
      multiple: false,
      directory: false,
      filters: [{ name: 'Conclave history (JSON)', extensions: ['json'] }],
    });
    const path = typeof picked === 'string' ? picked : null;
    if (!path) return { kind: 'cancelled', text: 'Nothing imported' };
    return { kind: 'imported', text: importReportText(await api.importHistoryFile(path)) };
  } catch (e) {
    return { kind: 'error', text: `Import failed: ${api.toApiError(e).message}` };
  }
}
