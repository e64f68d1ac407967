import { mount } from 'svelte';
import './app.css';
import App from './App.svelte';
import { applyTheme, savedTheme } from './lib/theme';

async function start() {
  // Dev-only IPC mock: `npm run dev` + `?mock`, or a build made with VITE_MOCK_IPC=1.
  // In a default production build both conditions are constant false and the mock is
  // dropped from the bundle.
  if (
    import.meta.env.VITE_MOCK_IPC === '1' ||
    (import.meta.env.DEV && new URLSearchParams(location.search).has('mock'))
  ) {
    const { installMockIpc } = await import('./mock/mockIpc');
    installMockIpc(new URLSearchParams(location.search));
  }
  applyTheme(savedTheme());
  mount(App, { target: document.getElementById('app')! });
}

void start();
