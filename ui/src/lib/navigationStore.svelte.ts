// Which screen the window shows. Its own store because the chat opens itself from other
// screens (a search hit, "continue as chat" in Compare) and must be able to switch back.

/** The screens the sidebar switches between. */
export type View = 'chat' | 'compare' | 'leaderboard' | 'models';

export class NavigationStore {
  view = $state<View>('chat');
}
