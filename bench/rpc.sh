#!/usr/bin/env bash
# One model over llama.cpp's RPC on loopback against the same model on the CPU alone, in
# one run: starts `conclave rpc-server` on a free 127.0.0.1 port, runs `conclave bench
# --rpc` (which measures the CPU-only load first, then the spread one, and prints the
# rpc/local ratios), stops the server.
#   bench/rpc.sh                                   SmolLM2, all layers on the server
#   BENCH_GPU_LAYERS=15 bench/rpc.sh               15 layers remote, the rest local
#   BENCH_MODEL=models/gemma-3-270m-q4_k_m.gguf BENCH_THREADS=1 bench/rpc.sh
# Loopback measures the RPC protocol's own cost (copies, round trips per graph), not a
# network's. On a busy machine the figures are indicative only: rerun on a quiet one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="${CARGO_TARGET_DIR:-/var/tmp/conclave-target}/${PROFILE:-debug}"
for b in conclave conclave-worker; do
  [ -x "$bin/$b" ] || { echo "build first: make build" >&2; exit 1; }
done
model="${BENCH_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
threads="${BENCH_THREADS:-1}"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/conclave" rpc-server --port "$port" --threads "$threads" >/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  sleep 0.1
done
extra=()
[ -n "${BENCH_GPU_LAYERS:-}" ] && extra+=(--gpu-layers "$BENCH_GPU_LAYERS")
"$bin/conclave" bench --model "$model" --threads "$threads" --rpc "127.0.0.1:$port" \
  "${extra[@]}" ${BENCH_JSON:+--json}
