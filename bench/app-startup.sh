#!/usr/bin/env bash
# Cold start and idle memory of the real app under Xvfb, against the targets of the
# desktop issue (start < 1 s to a usable window with the conversation list; idle < 150 MB
# over all its processes, no model loaded). Prints each figure and its ratio to the
# target. Run after `make build` (or `make run` once); needs Xvfb.
#   bench/app-startup.sh [runs]   (default 5)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs="${1:-5}"
app="${CARGO_TARGET_DIR:-/var/tmp/conclave-target}/debug/conclave-app"
[ -x "$app" ] || { echo "build the app first: make build" >&2; exit 1; }

if [ -z "${DISPLAY:-}" ]; then
  Xvfb :97 -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
  xvfb=$!
  trap 'kill $xvfb 2>/dev/null || true' EXIT
  export DISPLAY=:97
  sleep 1
fi

# Proportional set size (PSS) of a process and all its descendants, in kB: RSS would count
# the WebKit libraries that the app and its web processes share once per process.
tree_pss() {
  local pids=("$1") all=() p
  while [ ${#pids[@]} -gt 0 ]; do
    p=${pids[0]}; pids=("${pids[@]:1}"); all+=("$p")
    for c in $(pgrep -P "$p" || true); do pids+=("$c"); done
  done
  for p in "${all[@]}"; do awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null; done | awk '{s+=$1} END {print s+0}'
}

starts=(); mems=()
for i in $(seq "$runs"); do
  data=$(mktemp -d)
  log="$data/stderr.log"
  t0=$(date +%s%N)
  CONCLAVE_DATA_DIR="$data" "$app" 2>"$log" &
  pid=$!
  until grep -q "conversation list served" "$log" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "the app exited:"; cat "$log"; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s%N)
  starts+=($(( (t1 - t0) / 1000000 )))
  sleep 3 # idle
  mems+=($(( $(tree_pss "$pid") / 1024 )))
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
s=$(median "${starts[@]}"); m=$(median "${mems[@]}")
echo "cold start to conversation list: median ${s} ms over $runs runs (${starts[*]}); target 1000 ms; ratio $(awk "BEGIN{printf \"%.2f\", $s/1000}")"
echo "idle memory (PSS), all processes: median ${m} MB (${mems[*]}); target 150 MB; ratio $(awk "BEGIN{printf \"%.2f\", $m/150}")"
