// Derives the visible path and the branch siblings from the flat message tree
// that get_conversation returns (parent links only).

export interface TreeNode {
  id: string;
  parent_id: string | null;
  created_at: string;
}

export interface TreeIndex<T extends TreeNode> {
  byId: Map<string, T>;
  /** Children of each parent (key null = roots), oldest first. */
  children: Map<string | null, T[]>;
}

export function indexTree<T extends TreeNode>(messages: readonly T[]): TreeIndex<T> {
  const byId = new Map<string, T>();
  for (const m of messages) byId.set(m.id, m);
  const children = new Map<string | null, T[]>();
  messages.forEach((m) => {
    // A parent that is missing (deleted, not yet loaded) makes the message a root.
    const key = m.parent_id !== null && byId.has(m.parent_id) ? m.parent_id : null;
    let list = children.get(key);
    if (!list) children.set(key, (list = []));
    list.push(m);
  });
  for (const list of children.values()) {
    // Stable: equal timestamps keep the server's order.
    list.sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0));
  }
  return { byId, children };
}

/** Follows the newest child from `id` down to a leaf. */
export function deepestLeaf<T extends TreeNode>(index: TreeIndex<T>, id: string): string {
  let cur = id;
  const seen = new Set<string>();
  for (;;) {
    seen.add(cur);
    const kids = index.children.get(cur);
    if (!kids || kids.length === 0) return cur;
    const next = kids[kids.length - 1].id;
    if (seen.has(next)) return cur;
    cur = next;
  }
}

/**
 * Root → leaf path ending at `leafId`. When the leaf is null or unknown, the path follows
 * the newest branch from the newest root.
 */
export function pathTo<T extends TreeNode>(index: TreeIndex<T>, leafId: string | null): T[] {
  let leaf = leafId !== null ? index.byId.get(leafId) : undefined;
  if (!leaf) {
    const roots = index.children.get(null);
    if (!roots || roots.length === 0) return [];
    leaf = index.byId.get(deepestLeaf(index, roots[roots.length - 1].id));
    if (!leaf) return [];
  }
  const path: T[] = [];
  const seen = new Set<string>();
  let cur: T | undefined = leaf;
  while (cur && !seen.has(cur.id)) {
    seen.add(cur.id);
    path.push(cur);
    cur = cur.parent_id !== null ? index.byId.get(cur.parent_id) : undefined;
  }
  return path.reverse();
}

export interface Siblings {
  ids: string[];
  /** 0-based position of the message among its siblings. */
  index: number;
  count: number;
}

export function siblingsOf<T extends TreeNode>(index: TreeIndex<T>, id: string): Siblings {
  const m = index.byId.get(id);
  if (!m) return { ids: [id], index: 0, count: 1 };
  const key = m.parent_id !== null && index.byId.has(m.parent_id) ? m.parent_id : null;
  const ids = (index.children.get(key) ?? [m]).map((x) => x.id);
  return { ids, index: Math.max(0, ids.indexOf(id)), count: ids.length };
}

/** The leaf to show after moving `delta` siblings away from message `id` (clamped). */
export function siblingLeaf<T extends TreeNode>(
  index: TreeIndex<T>,
  id: string,
  delta: number,
): string | null {
  const s = siblingsOf(index, id);
  const target = s.index + delta;
  if (target < 0 || target >= s.count) return null;
  return deepestLeaf(index, s.ids[target]);
}
