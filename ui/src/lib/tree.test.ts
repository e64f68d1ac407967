import { describe, expect, it } from 'vitest';
import { indexTree, pathTo, siblingsOf, siblingLeaf, deepestLeaf } from './tree';

const m = (id: string, parent_id: string | null, t: number) => ({
  id,
  parent_id,
  created_at: new Date(Date.UTC(2025, 0, 1, 0, 0, t)).toISOString(),
});

// u1 ─┬─ a1
//     ├─ a2 ── u2 ── a3
//     └─ a4
// u1' (edited sibling of u1) ── a5
const flat = [
  m('u1', null, 1),
  m('a1', 'u1', 2),
  m('a2', 'u1', 3),
  m('u2', 'a2', 4),
  m('a3', 'u2', 5),
  m('a4', 'u1', 6),
  m('u1b', null, 7),
  m('a5', 'u1b', 8),
];

describe('path and siblings from the flat tree', () => {
  const idx = indexTree(flat);

  it('builds the root → leaf path from parent links', () => {
    expect(pathTo(idx, 'a3').map((x) => x.id)).toEqual(['u1', 'a2', 'u2', 'a3']);
    expect(pathTo(idx, 'a5').map((x) => x.id)).toEqual(['u1b', 'a5']);
  });

  it('follows the newest branch when the leaf is unknown or null', () => {
    expect(pathTo(idx, null).map((x) => x.id)).toEqual(['u1b', 'a5']);
    expect(pathTo(idx, 'nope').map((x) => x.id)).toEqual(['u1b', 'a5']);
    expect(pathTo(indexTree([]), null)).toEqual([]);
  });

  it('lists siblings (same parent) oldest first with the position', () => {
    expect(siblingsOf(idx, 'a2')).toEqual({ ids: ['a1', 'a2', 'a4'], index: 1, count: 3 });
    expect(siblingsOf(idx, 'u1b')).toEqual({ ids: ['u1', 'u1b'], index: 1, count: 2 });
    expect(siblingsOf(idx, 'a3').count).toBe(1);
  });

  it('sorts siblings by time even when the server sends them out of order', () => {
    const shuffled = indexTree([flat[5], flat[0], flat[2], flat[1]]);
    expect(siblingsOf(shuffled, 'a1').ids).toEqual(['a1', 'a2', 'a4']);
  });

  it('moving to a sibling lands on the deepest newest leaf below it', () => {
    expect(siblingLeaf(idx, 'a1', 1)).toBe('a3'); // a2 continues to u2 → a3
    expect(siblingLeaf(idx, 'a2', 1)).toBe('a4');
    expect(siblingLeaf(idx, 'a1', -1)).toBeNull();
    expect(siblingLeaf(idx, 'a4', 1)).toBeNull();
    expect(siblingLeaf(idx, 'u1b', -1)).toBe('a4'); // newest child of u1
    expect(deepestLeaf(idx, 'u1')).toBe('a4');
  });

  it('treats messages whose parent is missing as roots and survives cycles', () => {
    const orphan = indexTree([m('x', 'gone', 1), m('y', 'x', 2)]);
    expect(pathTo(orphan, 'y').map((n) => n.id)).toEqual(['x', 'y']);
    const cyc = indexTree([m('p', 'q', 1), m('q', 'p', 2)]);
    expect(pathTo(cyc, 'p').length).toBeLessThanOrEqual(2);
  });
});
