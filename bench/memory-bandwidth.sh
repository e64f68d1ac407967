#!/usr/bin/env bash
# The machine's memory bandwidth: one core streaming a 256 MiB buffer (far beyond the
# last-level cache), then every core at once. Small models are bandwidth-bound (each token
# reads all the weights), so "together ÷ one" is the most any side-by-side run of two
# models can gain over one model with all the cores; bench/compare.sh is read against it.
#   bench/memory-bandwidth.sh [passes]   (default 20)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bin=$(mktemp -d)/membw
trap 'rm -rf "$(dirname "$bin")"' EXIT
cc -O2 -mavx2 memory-bandwidth.c -o "$bin"
cores=$(python3 -c 'import os; print(len(os.sched_getaffinity(0)))')
one=$("$bin" "${1:-20}" | awk '{print $1}')
all=$(for _ in $(seq "$cores"); do "$bin" "${1:-20}" & done | awk '{s+=$1} END {print s}')
echo "one core:    $one GB/s"
echo "$cores cores:     $all GB/s together"
echo "ratio: $(awk "BEGIN{printf \"%.2f\", $all/$one}")x"
