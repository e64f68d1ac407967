// The saved conversations as the sidebar lists them, and what the sidebar does to them
// (rename, delete, export). Renaming or deleting the open one also changes the chat on
// screen, hence the chat store here; failures go to the app-wide banner because the
// sidebar has no place of its own to show them.
import * as api from './api';
import type { AppStatusStore } from './appStatusStore.svelte';
import type { ChatStore } from './chatStore.svelte';
import type { ApiError, ConversationSummary, ExportFormat } from './types';

export class HistoryStore {
  conversations = $state<ConversationSummary[]>([]);
  error = $state<ApiError | null>(null);
  loaded = $state(false);

  private readonly status: AppStatusStore;
  private readonly chat: ChatStore;

  constructor(status: AppStatusStore, chat: ChatStore) {
    this.status = status;
    this.chat = chat;
  }

  async refresh(): Promise<void> {
    try {
      this.conversations = await api.listConversations(200, null);
      this.error = null;
    } catch (e) {
      this.error = api.toApiError(e);
    } finally {
      this.loaded = true;
    }
  }

  async rename(id: string, title: string): Promise<void> {
    const t = title.trim();
    if (!t) return;
    try {
      await api.renameConversation(id, t);
      this.conversations = this.conversations.map((c) => (c.id === id ? { ...c, title: t } : c));
      if (this.chat.conversationId === id) this.chat.title = t;
    } catch (e) {
      this.status.showError(`Rename failed: ${api.toApiError(e).message}`);
    }
  }

  async remove(id: string): Promise<void> {
    try {
      await api.deleteConversation(id);
      this.conversations = this.conversations.filter((c) => c.id !== id);
      if (this.chat.conversationId === id) this.chat.newChat();
    } catch (e) {
      this.status.showError(`Delete failed: ${api.toApiError(e).message}`);
    }
  }

  /** The conversation as text (for the clipboard); null when the core could not export it. */
  async exportText(id: string, format: ExportFormat): Promise<string | null> {
    try {
      return await api.exportConversation(id, format);
    } catch (e) {
      this.status.showError(`Export failed: ${api.toApiError(e).message}`);
      return null;
    }
  }
}
