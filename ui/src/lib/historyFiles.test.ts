import { describe, expect, it } from 'vitest';
import { mockIPC } from '@tauri-apps/api/mocks';
import { importFromFile, saveToFile, suggestedName, type Dialogs } from './historyFiles';

function dialogs(savePath: string | null, openPath: string | null): Dialogs {
  return { save: async () => savePath, open: async () => openPath };
}

describe('history files: the message says what really happened', () => {
  it('save reports the conversations and bytes the shell wrote', async () => {
    const calls: unknown[] = [];
    mockIPC((cmd, args) => {
      calls.push({ cmd, args });
      return { path: '/home/u/Chat.md', conversations: 1, bytes: 2048 };
    });
    const out = await saveToFile('c1', 'md', 'Chat?', dialogs('/home/u/Chat.md', null));
    expect(calls).toEqual([{ cmd: 'export_history_file', args: { id: 'c1', format: 'md', path: '/home/u/Chat.md' } }]);
    expect(out).toEqual({ kind: 'saved', text: 'Saved 1 conversation (2.0 KB) to /home/u/Chat.md' });
  });

  it('a cancelled dialog says "Not saved" and calls nothing', async () => {
    const calls: unknown[] = [];
    mockIPC((cmd) => calls.push(cmd));
    expect(await saveToFile(null, 'json', 'x', dialogs(null, null))).toEqual({ kind: 'cancelled', text: 'Not saved' });
    expect(calls).toEqual([]);
  });

  it('a failed write is an error, never "Saved"', async () => {
    mockIPC(() => {
      throw { code: 'file', message: '/ro/x.json: Permission denied (os error 13)' };
    });
    const out = await saveToFile(null, 'json', 'x', dialogs('/ro/x.json', null));
    expect(out.kind).toBe('error');
    expect(out.text).toBe('Not saved: /ro/x.json: Permission denied (os error 13)');
  });

  it('import reports imported and skipped conversations', async () => {
    mockIPC((cmd, args) => {
      expect(cmd).toBe('import_history_file');
      expect(args).toEqual({ path: '/tmp/h.json' });
      return { conversations: 2, messages: 9, skipped_existing: ['a'] };
    });
    expect(await importFromFile(dialogs(null, '/tmp/h.json'))).toEqual({
      kind: 'imported',
      text: 'Imported 2 conversations (9 messages); skipped 1 already in your history',
    });
  });

  it('import mentions the presets it brought', async () => {
    mockIPC(() => ({ conversations: 1, messages: 2, skipped_existing: [], presets: 2, skipped_presets: [] }));
    expect((await importFromFile(dialogs(null, '/tmp/h.json'))).text).toBe('Imported 1 conversation (2 messages), 2 presets');
  });

  it('import of a bad file shows the core reason', async () => {
    mockIPC(() => {
      throw { code: 'invalid_import', message: 'invalid import file: not valid JSON' };
    });
    expect(await importFromFile(dialogs(null, '/tmp/h.json'))).toEqual({
      kind: 'error',
      text: 'Import failed: invalid import file: not valid JSON',
    });
  });

  it('suggested names drop characters file systems reject', () => {
    expect(suggestedName('What/is: this?', 'md')).toBe('Whatis this.md');
    expect(suggestedName('???', 'json')).toBe('conversation.json');
  });
});
