#!/usr/bin/env bash
# Conclave on a GPU against llama.cpp's own llama-bench, same llama.cpp source, same model,
# all layers on the GPU, in one run; prints both generation speeds and their ratio.
#
# UNTESTED so far: written on a machine with no GPU and no CUDA toolkit. Two steps.
#
# 1. Here (Rust toolchain, no GPU needed):  bench/gpu.sh bundle [DIR]
#    Builds `conclave` and `conclave-worker` (release) linked to llama.cpp's *shared*
#    libraries (LLAMA_BUILD_SHARED_LIBS=1, a separate target folder), and puts them in DIR
#    (default /var/tmp/conclave-gpu-bundle) with the vendored llama.cpp source the crates
#    were built from, the test model and this script. The Rust code is CPU code: which
#    backends exist is decided by the libggml*.so it finds at run time.
#    Carry DIR to the GPU machine (scp -r, a USB disk: it has no network).
#
# 2. There (nvcc, CMake, ninja; no Rust, no network):  DIR/gpu.sh run
#    Builds llama.cpp from the carried source with CUDA and RPC as shared libraries, plus
#    llama-bench (only for the GPU it finds: a few minutes on an H200), then runs
#    llama-bench and `conclave bench --gpu-layers 999` on the model with the worker using
#    those CUDA libraries (LD_LIBRARY_PATH), and prints tokens/s of both and the ratio.
#    Env: BENCH_MODEL (default the carried SmolLM2), BENCH_REPS (5), BENCH_GEN (128),
#    BENCH_PROMPT (64), CUDA_ARCH (default: native).
set -euo pipefail
mode="${1:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

bundle() {
  local out="${1:-/var/tmp/conclave-gpu-bundle}"
  cd "$here/.."
  local target=/var/tmp/conclave-target-shared
  LLAMA_BUILD_SHARED_LIBS=1 CARGO_TARGET_DIR="$target" \
    cargo build --release -p conclave-worker -p conclave-cli
  mkdir -p "$out/bin" "$out/models"
  cp "$target/release/conclave" "$target/release/conclave-worker" "$out/bin/"
  local src
  src=$(ls -d "$HOME"/.cargo/registry/src/*/llama-cpp-sys-2-0.1.161/llama.cpp | head -1)
  rm -rf "$out/llama.cpp"
  cp -r "$src" "$out/llama.cpp"
  cp -L models/SmolLM2-135M-Instruct.Q4_1.gguf "$out/models/"
  cp "$here/gpu.sh" "$out/gpu.sh"
  echo "bundle ready in $out ($(du -sh "$out" | cut -f1)); on the GPU machine: $out/gpu.sh run"
}

run() {
  cd "$here"
  local model="${BENCH_MODEL:-$here/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
  local reps="${BENCH_REPS:-5}" gen="${BENCH_GEN:-128}" prompt="${BENCH_PROMPT:-64}"
  command -v nvcc >/dev/null || { echo "nvcc not found" >&2; exit 1; }
  cmake -S llama.cpp -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=ON -DGGML_CUDA=ON -DGGML_RPC=ON -DGGML_NATIVE=OFF \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-native}" -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  cmake --build build --target llama-bench llama ggml ggml-rpc -j "$(nproc)"
  local libs
  libs=$(find build -name 'lib*.so*' -printf '%h\n' | sort -u | paste -sd:)
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  ldd bin/conclave-worker | grep -E 'llama|ggml' || true
  # The worker's sandbox must let CUDA open /dev/nvidia* (crates/conclave-worker/src/
  # sandbox.rs, gpu_access): a run without the sandbox tells a sandbox rule apart from a
  # driver or build problem.
  local devs
  devs=$(CONCLAVE_WORKER="$here/bin/conclave-worker" bin/conclave devices 2>&1) || true
  echo "$devs"
  if ! grep -qi cuda <<<"$devs"; then
    echo "no CUDA device seen by the sandboxed worker; with CONCLAVE_WORKER_SANDBOX=off:" >&2
    CONCLAVE_WORKER_SANDBOX=off CONCLAVE_WORKER="$here/bin/conclave-worker" bin/conclave devices >&2 || true
    exit 1
  fi

  local lb
  lb=$(find build -name llama-bench -type f -perm -u+x | head -1)
  "$lb" -m "$model" -ngl 999 -p "$prompt" -n "$gen" -r "$reps" -o json > llama-bench.json
  CONCLAVE_WORKER="$here/bin/conclave-worker" CONCLAVE_DATA_DIR="$here/data" \
    bin/conclave bench --model "$model" --gpu-layers 999 --prompt-tokens "$prompt" \
    --gen-tokens "$gen" --reps "$reps" --json > conclave-bench.json
  python3 - <<'PY'
import json
lb = json.load(open("llama-bench.json"))
gen = [r["avg_ts"] for r in lb if r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0]
pp = [r["avg_ts"] for r in lb if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0]
cb = json.load(open("conclave-bench.json"))
print(f"devices              {cb.get('devices') or 'CPU (no GPU layers!)'}")
print(f"llama-bench gen t/s  {gen[0]:.1f}   prompt t/s {pp[0]:.1f}")
print(f"conclave raw gen t/s {cb['raw']['gen_tps']:.1f}   prompt t/s {cb['raw']['prompt_tps']:.1f}")
print(f"conclave pipeline    {cb['pipeline']['gen_tps']:.1f} gen t/s")
print(f"ratio conclave/llama-bench: raw gen {cb['raw']['gen_tps']/gen[0]:.3f}x, "
      f"pipeline gen {cb['pipeline']['gen_tps']/gen[0]:.3f}x, prompt {cb['raw']['prompt_tps']/pp[0]:.3f}x")
PY
}

case "$mode" in
  bundle) shift; bundle "$@" ;;
  run) run ;;
  *) echo "usage: bench/gpu.sh bundle [DIR]   (here)  |  DIR/gpu.sh run   (on the GPU machine)" >&2; exit 2 ;;
esac
