// Search snippets mark hits as \u0001…\u0002. Split into parts rendered as text / <mark>.

export interface SnippetPart {
  text: string;
  hit: boolean;
}

export function splitSnippet(snippet: string): SnippetPart[] {
  const parts: SnippetPart[] = [];
  let hit = false;
  let buf = '';
  const push = () => {
    if (buf) {
      const last = parts[parts.length - 1];
      if (last && last.hit === hit) last.text += buf;
      else parts.push({ text: buf, hit });
    }
    buf = '';
  };
  for (const ch of snippet) {
    if (ch === '\u0001') {
      push();
      hit = true;
    } else if (ch === '\u0002') {
      push();
      hit = false;
    } else {
      buf += ch;
    }
  }
  push();
  return parts;
}
