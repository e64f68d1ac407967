// Global keyboard shortcuts, as a pure mapping so it can be tested.

export type ShortcutAction =
  | 'new-chat'
  | 'compare'
  | 'focus-input'
  | 'stop'
  | 'search'
  | 'prev-conversation'
  | 'next-conversation'
  | 'escape';

export interface KeyLike {
  key: string;
  ctrlKey: boolean;
  metaKey: boolean;
  altKey: boolean;
  shiftKey: boolean;
  /** Whether focus is in a text field (then `/` types a slash). */
  inTextField: boolean;
}

export function shortcutFor(e: KeyLike, streaming: boolean): ShortcutAction | null {
  const mod = e.ctrlKey || e.metaKey;
  if (mod && !e.altKey) {
    switch (e.key.toLowerCase()) {
      case 'n':
        return e.shiftKey ? null : 'new-chat';
      case 'c':
        // Plain Ctrl+C stays copy.
        return e.shiftKey ? 'compare' : null;
      case 'l':
        return 'focus-input';
      case 'k':
        return 'search';
      case 'arrowup':
        return 'prev-conversation';
      case 'arrowdown':
        return 'next-conversation';
    }
    return null;
  }
  if (e.key === 'Escape') return streaming ? 'stop' : 'escape';
  if (e.key === '/' && !e.inTextField && !e.altKey) return 'focus-input';
  return null;
}

export function isTextField(el: Element | null): boolean {
  if (!el) return false;
  const tag = el.tagName;
  if (tag === 'TEXTAREA' || tag === 'SELECT') return true;
  if (tag === 'INPUT') {
    const t = (el as HTMLInputElement).type;
    return !['checkbox', 'radio', 'button', 'submit', 'range', 'color'].includes(t);
  }
  return (el as HTMLElement).isContentEditable === true;
}
