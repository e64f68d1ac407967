import { afterEach } from 'vitest';
import { clearMocks } from '@tauri-apps/api/mocks';

// jsdom has no WebCrypto getRandomValues on window in some versions; Tauri's mocks need it.
if (!window.crypto?.getRandomValues) {
  Object.defineProperty(window, 'crypto', { value: globalThis.crypto });
}

afterEach(() => {
  clearMocks();
});
