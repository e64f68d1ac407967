#!/usr/bin/env bash
# Builds what the end-to-end tests drive and runs them against the real app.
# Needs: node/npm, the WebKitGTK dev packages, webkit2gtk-driver (WebKitWebDriver), xvfb
# (unless DISPLAY is set), and the SmolLM2 model in models/ (make models).
# Env: CARGO_TARGET_DIR (shared target dir), CONCLAVE_SHOTS_DIR (screenshots; default
# <target>/e2e-shots). Extra arguments go to the test binary (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ ! -d ui/node_modules ]; then (cd ui && npm ci); fi
(cd ui && npm run build)
cargo build -p conclave-app -p conclave-worker
if ! command -v tauri-driver >/dev/null && [ ! -x "$HOME/.cargo/bin/tauri-driver" ]; then
  cargo install tauri-driver --version '^2' --locked
fi
# One app at a time: the tests share two cores and a model.
CONCLAVE_E2E=1 cargo test -p conclave-tests --test e2e_app -- --test-threads=1 "$@"
