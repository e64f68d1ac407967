#!/usr/bin/env bash
# The app's streaming speed against `conclave chat`, in one run: the release app under
# Xvfb, driven through tauri-driver, then the CLI on the same model, threads, prompt and
# seed (tests/tests/bench_app_stream.rs says what each figure is).
#   bench/app-stream.sh            all cases at 1 and 2 threads
#   BENCH_THREADS=2 BENCH_CASES=answer-1500 bench/app-stream.sh
#   BENCH_REPS=3                   app and CLI runs per case, taking turns (medians compared)
#   BENCH_JSON=out.json            also writes the figures as JSON
#   BENCH_UI_FRAME_MS=16,50,100    one app per page update interval (default: the app's own)
# Run it on a quiet machine: every other job on the cores shows up in the ratios.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${CARGO_TARGET_DIR:-/var/tmp/conclave-target}"
export CARGO_TARGET_DIR="$target"
app="$target/release/conclave-app"
for b in conclave-app conclave conclave-worker; do
  [ -x "$target/release/$b" ] || { echo "build first: make build-release" >&2; exit 1; }
done
export CONCLAVE_APP_BIN="$app" CONCLAVE_E2E=1 CONCLAVE_E2E_SESSION_SECS=${CONCLAVE_E2E_SESSION_SECS:-1800}
exec scripts/with-xvfb cargo test -q -p conclave-tests --test bench_app_stream -- \
  --ignored --nocapture --test-threads=1
