// Full-text search over the history, shown in the sidebar in place of the list.
import * as api from './api';
import type { ApiError, SearchHit } from './types';

export class SearchStore {
  query = $state('');
  includeReasoning = $state(false);
  results = $state<SearchHit[]>([]);
  error = $state<ApiError | null>(null);
  searching = $state(false);

  /** Answers can arrive out of order while the user types; only the latest one counts. */
  private seq = 0;

  async run(): Promise<void> {
    const q = this.query.trim();
    const seq = ++this.seq;
    if (!q) {
      this.results = [];
      this.error = null;
      this.searching = false;
      return;
    }
    this.searching = true;
    try {
      const hits = await api.search(q, this.includeReasoning);
      if (seq === this.seq) {
        this.results = hits;
        this.error = null;
      }
    } catch (e) {
      if (seq === this.seq) this.error = api.toApiError(e);
    } finally {
      if (seq === this.seq) this.searching = false;
    }
  }
}
