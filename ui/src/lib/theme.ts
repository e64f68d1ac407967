// The colour theme: 'system' follows prefers-color-scheme live; 'light' and 'dark' are
// fixed. The result is always written to <html data-theme>, so the stylesheet holds each
// palette once.

export type ThemeChoice = 'system' | 'light' | 'dark';

const KEY = 'conclave.theme';
let systemQuery: MediaQueryList | null = null;

export function savedTheme(): ThemeChoice {
  const v = localStorage.getItem(KEY);
  return v === 'light' || v === 'dark' ? v : 'system';
}

function systemTheme(): 'light' | 'dark' {
  return window.matchMedia?.('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

function followSystem(): void {
  document.documentElement.dataset.theme = systemTheme();
}

export function applyTheme(choice: ThemeChoice): void {
  if (choice === 'system') {
    localStorage.removeItem(KEY);
    followSystem();
    if (!systemQuery && window.matchMedia) {
      systemQuery = window.matchMedia('(prefers-color-scheme: dark)');
      systemQuery.addEventListener('change', () => {
        if (savedTheme() === 'system') followSystem();
      });
    }
  } else {
    localStorage.setItem(KEY, choice);
    document.documentElement.dataset.theme = choice;
  }
}
