// The thinking block's open/closed state. It streams open while the model thinks and
// folds away when the answer begins — unless the user has shown they are reading it.

export type ThinkPhase = 'streaming' | 'collapsed' | 'expanded';

export interface ThinkState {
  phase: ThinkPhase;
  /** The user opened it or is reading it: never close it on their behalf. */
  pinned: boolean;
}

export type ThinkEvent =
  /** First answer token arrived (thinking is over). */
  | { type: 'answer-start' }
  /** The stream ended (done, error, cancel). */
  | { type: 'end' }
  /** The user clicked the header. */
  | { type: 'toggle' }
  /** The user hovered, focused or scrolled inside while it streams. */
  | { type: 'reading' };

export function initialThink(live: boolean): ThinkState {
  return { phase: live ? 'streaming' : 'collapsed', pinned: false };
}

export function thinkReducer(s: ThinkState, e: ThinkEvent): ThinkState {
  switch (e.type) {
    case 'answer-start':
    case 'end':
      if (s.phase !== 'streaming') return s;
      return { phase: s.pinned ? 'expanded' : 'collapsed', pinned: s.pinned };
    case 'reading':
      return s.phase === 'streaming' && !s.pinned ? { ...s, pinned: true } : s;
    case 'toggle':
      if (s.phase === 'collapsed') return { phase: 'expanded', pinned: true };
      // Closing by hand, streaming or not.
      return { phase: 'collapsed', pinned: false };
  }
}

export function isOpen(s: ThinkState): boolean {
  return s.phase !== 'collapsed';
}
