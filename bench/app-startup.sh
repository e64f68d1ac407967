#!/usr/bin/env bash
# Cold start and idle memory of the real app under Xvfb, against the targets of the
# desktop issue (start < 1 s to a usable window with the conversation list; idle < 150 MB
# over all its processes, no model loaded), and against the floor: a Tauri window with the
# same WebKitGTK showing an empty page (src-tauri/examples/blank_window.rs), measured in
# the same run. Prints each figure, its ratio to the target and to the floor.
#   bench/app-startup.sh [runs]   (default 5)
#   PROFILE=release|debug   (default: release when built, else debug)
#   BENCH_MAPS=1   also print, per process of the last run, where its PSS lies (by mapped
#                  file, heap and anonymous memory), the app's beside the floor's
# Build first: `make build-release` (or `make build` for debug), which builds the floor too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs="${1:-5}"
target="${CARGO_TARGET_DIR:-/var/tmp/conclave-target}"
if [ -z "${PROFILE:-}" ]; then
  PROFILE=debug
  [ -x "$target/release/conclave-app" ] && PROFILE=release
fi
app="$target/$PROFILE/conclave-app"
floor="$target/$PROFILE/examples/blank_window"
[ -x "$app" ] || { echo "build the app first: make build-release (or make build)" >&2; exit 1; }
[ -x "$floor" ] || { echo "build the floor first: cargo build --profile $PROFILE -p conclave-app --example blank_window" >&2; exit 1; }

if [ -z "${DISPLAY:-}" ]; then
  Xvfb :97 -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
  xvfb=$!
  trap 'kill $xvfb 2>/dev/null || true' EXIT
  export DISPLAY=:97
  sleep 1
fi

# A process and all its descendants.
tree() {
  local pids=("$1") p
  while [ ${#pids[@]} -gt 0 ]; do
    p=${pids[0]}; pids=("${pids[@]:1}"); echo "$p"
    for c in $(pgrep -P "$p" || true); do pids+=("$c"); done
  done
}
# Proportional set size (PSS) of the tree, in kB: RSS would count the WebKit libraries
# that the app and its web processes share once per process. RSS is printed beside it.
tree_mem() { # pid field(Pss|Rss)
  for p in $(tree "$1"); do awk -v f="^$2:" '$0 ~ f {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null; done |
    awk '{s+=$1} END {print int(s/1024)}'
}

# measure BINARY MARKER -> sets starts, pss, rss, detail (per process, last run)
measure() {
  starts=(); pss=(); rss=(); detail=""
  for _ in $(seq "$runs"); do
    local data log pid t0 t1
    data=$(mktemp -d); log="$data/stderr.log"
    t0=$(date +%s%N)
    CONCLAVE_DATA_DIR="$data" "$1" 2>"$log" &
    pid=$!
    until grep -q "$2" "$log" 2>/dev/null; do
      kill -0 "$pid" 2>/dev/null || { echo "$1 exited:"; cat "$log"; exit 1; }
      sleep 0.01
    done
    t1=$(date +%s%N)
    starts+=($(( (t1 - t0) / 1000000 )))
    sleep 3 # idle
    pss+=("$(tree_mem "$pid" Pss)"); rss+=("$(tree_mem "$pid" Rss)")
    detail=$(for p in $(tree "$pid"); do
      printf '%s %s MB; ' "$(cat /proc/$p/comm)" "$(awk '/^Pss:/{print int($2/1024)}' /proc/$p/smaps_rollup)"
    done)
    maps=$(for p in $(tree "$pid"); do maps_of "$p"; done)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$data"
  done
}
# PSS of one process by mapping: the file's name, [heap], [stack] or [anon], in kB.
maps_of() {
  local comm; comm=$(cat "/proc/$1/comm")
  awk -v c="$comm" '
    /^[0-9a-f]+-[0-9a-f]+ / { n = ($6 == "") ? "[anon]" : $6; sub(/.*\//, "", n); next }
    /^Pss:/ { s[n] += $2 }
    END { for (k in s) if (s[k] >= 512) printf "%s %s %d\n", c, k, s[k] }' "/proc/$1/smaps" 2>/dev/null
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk "BEGIN{printf \"%.2f\", $1/$2}"; }

measure "$floor" "blank page loaded"
f_start=$(median "${starts[@]}"); f_pss=$(median "${pss[@]}"); f_rss=$(median "${rss[@]}"); f_detail=$detail
f_maps=$maps
measure "$app" "conversation list served"
s=$(median "${starts[@]}"); m=$(median "${pss[@]}"); r=$(median "${rss[@]}")

echo "profile: $PROFILE; painting: WEBKIT_DISABLE_COMPOSITING_MODE=${WEBKIT_DISABLE_COMPOSITING_MODE:-(app decides)}"
echo "cold start to conversation list: median ${s} ms over $runs runs (${starts[*]}); target 1000 ms; ratio $(ratio "$s" 1000)"
echo "idle memory (PSS), all processes: median ${m} MB (${pss[*]}); target 150 MB; ratio $(ratio "$m" 150)"
echo "  by process: $detail"
echo "  RSS summed over processes: ${r} MB"
echo "floor (blank Tauri window): start ${f_start} ms; PSS ${f_pss} MB (RSS ${f_rss} MB); by process: $f_detail"
echo "app over floor: PSS $(ratio "$m" "$f_pss")x, +$((m - f_pss)) MB; start $(ratio "$s" "$f_start")x (goal: both <= 1.10x)"
if [ "${BENCH_MAPS:-}" = 1 ]; then
  # One row per process kind and mapping, the app's kB beside the floor's, largest
  # difference first (the floor's process is conclave-app's counterpart blank_window).
  echo "PSS by mapping, last run (kB): process mapping app floor difference"
  { echo "$maps" | sed 's/^/app /'; echo "$f_maps" | sed 's/^blank_window /conclave-app /; s/^/floor /'; } |
    awk '$1 == "app" { a[$2 " " $3] += $4 } $1 == "floor" { f[$2 " " $3] += $4 }
      END { for (k in a) seen[k]; for (k in f) seen[k]
            for (k in seen) printf "  %-60s %7d %7d %7d\n", k, a[k], f[k], a[k] - f[k] }' |
    sort -k5 -n -r | head -"${BENCH_MAPS_ROWS:-25}"
fi
