#!/usr/bin/env bash
# The floor under a page's drawing CPU (issue 26, BENCHMARKS.md §9): what
# headless, software-composited Chromium at 1280x720 costs for throwaway
# pages (bench/floor/*.html: a static page, an empty requestAnimationFrame
# loop, a 20x20 canvas and a stage-sized 1048x680 canvas each changed once a
# frame; the viewer's own drawing of ~280 changed cells a frame without the
# rest of the page), measured in one interleaved run with the real watch-only page
# (`/?contribute=0`, one native worker) of each `donut` binary given
# (default target/release/donut). Same measuring code as bench/tab-cpu.sh
# (bench/lib/chromium-cpu.sh); each round measures every page once, in turn.
#
#   ./build.sh build && bench/canvas-floor.sh [target/release/donut ...]
#   env: SECONDS_MEASURED=30 WARMUP=8 ROUNDS=1 DONUT_CHROMIUM=/usr/bin/chromium
#        FLOOR="static raf tiny stage cells" (pages of bench/floor/, without .html)
#        PAGE="/?contribute=0" (the real page's path)
set -euo pipefail
cd "$(dirname "$0")/.."
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/donut)
rounds=${ROUNDS:-1}
read -r -a floor <<<"${FLOOR:-static raf tiny stage cells}"
page=${PAGE:-/?contribute=0}
# shellcheck source=bench/lib/chromium-cpu.sh
. bench/lib/chromium-cpu.sh

fport=$(free_port)
python3 -m http.server "$fport" --bind 127.0.0.1 --directory bench/floor >/dev/null 2>&1 & files=$!
pids+=("$files")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$fport/static.html" >/dev/null && break; sleep 0.1; done

header
for r in $(seq "$rounds"); do
  for f in "${floor[@]}"; do
    chromium_cpu "http://127.0.0.1:$fport/$f.html" "$(printf '%-32s %-16s' "floor" "$f.html")"
  done
  for bin in "${bins[@]}"; do
    serve_show "$bin"
    chromium_cpu "http://127.0.0.1:$port$page" "$(printf '%-32s %-16s' "$bin" "$page")" fleet
    kill "$worker" "$server" 2>/dev/null || true
    wait "$worker" "$server" 2>/dev/null || true
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
