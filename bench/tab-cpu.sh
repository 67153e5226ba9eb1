#!/usr/bin/env bash
# CPU a visible page costs (issue 26): for each `donut` binary given (default
# target/release/donut), serves the show on a free loopback port with one
# native worker, opens it in a fresh headless Chromium at 1280x720, lets it
# play WARMUP seconds, then sums utime+stime (/proc/<pid>/stat) of every
# process of that Chromium over SECONDS seconds. Prints, per binary and page
# (`/?contribute=0`: watch only; `/?contribute=1`: contributing, where a bare
# `/` first asks the visitor since issue 27), the % of one core used by
# the renderer processes (the page's main thread, its Web Worker and its
# compositor thread), by the GPU/viz process (the display compositor, in
# software here) and by all of Chromium.
#
#   ./build.sh build && bench/tab-cpu.sh [target/release/donut ...]
#   env: SECONDS_MEASURED=30 WARMUP=8 ROUNDS=1 DONUT_CHROMIUM=/usr/bin/chromium
#        PAGES="/?contribute=0 /?contribute=1"
#
# Several binaries alternate within each round (A B A B…), so a before/after
# pair shares the machine's load. The measuring code is bench/lib/chromium-cpu.sh,
# shared with bench/canvas-floor.sh (the floor under any page, BENCHMARKS.md §9).
set -euo pipefail
cd "$(dirname "$0")/.."
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/donut)
rounds=${ROUNDS:-1}
read -r -a pages <<<"${PAGES:-/?contribute=0 /?contribute=1}"
# shellcheck source=bench/lib/chromium-cpu.sh
. bench/lib/chromium-cpu.sh

measure() { # bin page -> one result line
  local bin=$1 page=$2
  serve_show "$bin"
  chromium_cpu "http://127.0.0.1:$port$page" "$(printf '%-32s %-16s' "$bin" "$page")" fleet
  kill "$worker" "$server" 2>/dev/null || true
  wait "$worker" "$server" 2>/dev/null || true
}

header
for r in $(seq "$rounds"); do
  for page in "${pages[@]}"; do
    for bin in "${bins[@]}"; do
      measure "$bin" "$page"
    done
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
