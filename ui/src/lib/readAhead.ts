// Whether the model reads a message while it is typed (chatStore.warm). On by default: it
// makes the answer start sooner. A laptop on battery may prefer the CPU idle until Enter.
// A preference of this machine, like the theme, so it lives in localStorage and not in a
// conversation's settings.

const KEY = 'conclave.readAhead';

export function readAheadEnabled(): boolean {
  return typeof localStorage === 'undefined' || localStorage.getItem(KEY) !== 'off';
}

export function setReadAhead(on: boolean): void {
  if (on) localStorage.removeItem(KEY);
  else localStorage.setItem(KEY, 'off');
}
