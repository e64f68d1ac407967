#!/usr/bin/env bash
# Side-by-side throughput: two models answering at once (`conclave compare`) against the
# same two answers generated one after the other, each at its best thread count
# (`conclave chat --threads 1..cores`). Greedy, fixed seed and max tokens, nothing saved.
#
# Prints, from medians over REPS runs:
#   aggregate ratio  = concurrent generated tokens/s ÷ one-after-another tokens/s   (goal ≥ 1.45)
#   column ratios    = each column's t/s in the compare ÷ its best solo t/s          (goal ≥ 0.5)
# Both sides are timed from request to last token (model loads excluded).
#
# Usage: bench/compare.sh [model_a] [model_b]
#   CONCLAVE=path/to/conclave  REPS=3  MAX_TOKENS=128  PROMPT="…"  CORES=2
set -euo pipefail
cd "$(dirname "$0")/.."
CONCLAVE=${CONCLAVE:-${CARGO_TARGET_DIR:-target}/debug/conclave}
A=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
B=${2:-models/gemma-3-270m-q4_k_m.gguf}
REPS=${REPS:-3}
MAX_TOKENS=${MAX_TOKENS:-128}
PROMPT=${PROMPT:-"Write a long story about a lighthouse keeper."}
CORES=${CORES:-$(python3 -c 'import os; print(len(os.sched_getaffinity(0)))')}
export CONCLAVE_DATA_DIR=$(mktemp -d)
trap 'rm -rf "$CONCLAVE_DATA_DIR"' EXIT
[ -x "$CONCLAVE" ] || { echo "no conclave binary at $CONCLAVE (cargo build -p conclave-cli -p conclave-worker)" >&2; exit 1; }
common=(--temp 0 --seed 1 --max-tokens "$MAX_TOKENS" --no-save --json)

median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

# solo MODEL THREADS -> "tokens wall_ms gen_tps" (medians)
solo() {
  local toks=() walls=() tps=()
  for _ in $(seq "$REPS"); do
    read -r t w s < <("$CONCLAVE" chat --model "$1" --threads "$2" "${common[@]}" "$PROMPT" |
      jq -r 'select(.type=="done") | "\(.usage.completion_tokens) \(.metrics.wall_ms) \(.metrics.gen_tps)"')
    toks+=("$t"); walls+=("$w"); tps+=("$s")
  done
  echo "$(median "${toks[@]}") $(median "${walls[@]}") $(median "${tps[@]}")"
}

declare -A best_tps best_wall best_tok one_tps
for m in "$A" "$B"; do
  best_tps[$m]=0
  for t in $(seq 1 "$CORES"); do
    read -r tok wall tps < <(solo "$m" "$t")
    [ "$t" = 1 ] && one_tps[$m]=$tps
    printf 'solo  %-40s threads %d: %5.1f t/s  (%s tokens, %.0f ms)\n' "$(basename "$m")" "$t" "$tps" "$tok" "$wall"
    if python3 -c "import sys; sys.exit(0 if $tps > ${best_tps[$m]} else 1)"; then
      best_tps[$m]=$tps; best_wall[$m]=$wall; best_tok[$m]=$tok
    fi
  done
done

aggs=() ca=() cb=()
for _ in $(seq "$REPS"); do
  read -r agg ta tb < <("$CONCLAVE" compare --model "$A" --model "$B" "${common[@]}" "$PROMPT" |
    jq -r 'select(.type=="summary") | "\(.aggregate_tokens_per_second) \(.columns[0].tokens_per_second) \(.columns[1].tokens_per_second)"')
  aggs+=("$agg"); ca+=("$ta"); cb+=("$tb")
done
agg=$(median "${aggs[@]}"); ta=$(median "${ca[@]}"); tb=$(median "${cb[@]}")

python3 - "$agg" "$ta" "$tb" "${best_tok[$A]}" "${best_wall[$A]}" "${best_tps[$A]}" "${best_tok[$B]}" "${best_wall[$B]}" "${best_tps[$B]}" "$(basename "$A")" "$(basename "$B")" "$A" "$B" "${one_tps[$A]}" "${one_tps[$B]}" <<'PY'
import os, sys
agg, ta, tb, tok_a, wall_a, tps_a, tok_b, wall_b, tps_b = map(float, sys.argv[1:10])
name_a, name_b = sys.argv[10:12]
seq = (tok_a + tok_b) / ((wall_a + wall_b) / 1000)
print(f"one after another (best threads): {seq:6.1f} t/s aggregate")
print(f"concurrent compare:               {agg:6.1f} t/s aggregate")
print(f"aggregate ratio: {agg / seq:.2f}x (goal >= 1.45)")
print(f"column ratio {name_a}: {ta / tps_a:.2f} ({ta:.1f} vs solo {tps_a:.1f} t/s; goal >= 0.5)")
print(f"column ratio {name_b}: {tb / tps_b:.2f} ({tb:.1f} vs solo {tps_b:.1f} t/s; goal >= 0.5)")
# Every generated token reads (nearly) all the weights: file size x t/s is the memory
# traffic each side asks of the machine, the usual ceiling for small models on few cores.
size_a, size_b = (os.path.getsize(p) for p in sys.argv[12:14])
# The ceiling if sharing cost nothing: both columns at their one-thread solo speed until
# the first ends, then the other at its best speed (prompts and loads left out).
one_a, one_b = map(float, sys.argv[14:16])
first = min(tok_a / one_a, tok_b / one_b)
rest = tok_b - first * one_b if tok_a / one_a <= tok_b / one_b else tok_a - first * one_a
rest_tps = tps_b if tok_a / one_a <= tok_b / one_b else tps_a
ideal = (tok_a / tps_a + tok_b / tps_b) / (first + rest / rest_tps)
print(f"ceiling with no contention between the columns: {ideal:.2f}x")
gb = lambda b, t: b * t / 1e9
print(f"weights read: solo {gb(size_a, tps_a):.1f} / {gb(size_b, tps_b):.1f} GB/s, "
      f"concurrent {gb(size_a, ta) + gb(size_b, tb):.1f} GB/s together")
PY
