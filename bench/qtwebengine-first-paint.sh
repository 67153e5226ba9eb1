#!/usr/bin/env bash
# First paint on the compatibility path, in a real old engine: QtWebEngine
# 5.15 (Chromium 87, a 2021-2022 smart TV's engine; Debian's
# python3-pyqt5.qtwebengine), offscreen, a fresh off-the-record profile per
# run, watch-only (`?contribute=0`), against the release `donut` binary fed
# by one native worker. Prints, per run and as medians, the viewer's
# milestones in ms since the navigation start (`donutViewer.milestones()`):
# viewer constructed (wasm instantiated), first Frames message, first paint.
#
#   ./build.sh build && bench/qtwebengine-first-paint.sh   (DONUT_RUNS=10)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${DONUT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/donut}"
RUNS="${DONUT_RUNS:-10}"
PORT="${DONUT_PORT:-18901}"
PYTHON="${DONUT_PYTHON:-/usr/bin/python3}"
"$BIN" serve --listen "127.0.0.1:$PORT" >/dev/null 2>&1 &
server=$!
"$BIN" work --server "ws://127.0.0.1:$PORT" --threads 1 >/dev/null 2>&1 &
worker=$!
trap 'kill "$server" "$worker" 2>/dev/null || true' EXIT
sleep 4
for _ in $(seq "$RUNS"); do
    "$PYTHON" "$ROOT/server/tests/qtwebengine/drive.py" "http://127.0.0.1:$PORT/?contribute=0" 4 2>/dev/null
done | "$PYTHON" -c '
import json, statistics, sys
runs, seen = [], None
for line in sys.stdin:
    v = json.loads(line)
    if "ua" in v:
        seen = None
        continue
    m = (v.get("state") or {}).get("milestones") or {}
    if seen is None and m.get("firstPaint") is not None:
        seen = m
        runs.append(m)
        print("run %2d: build %s, created %6.1f ms, first Frames %6.1f ms, first paint %6.1f ms"
              % (len(runs), v["state"]["build"], m["created"], m["firstFrames"], m["firstPaint"]))
if not runs:
    sys.exit("no run painted")
med = lambda k: statistics.median(r[k] for r in runs)
print("median of %d: created %.1f ms, first Frames %.1f ms, first paint %.1f ms"
      % (len(runs), med("created"), med("firstFrames"), med("firstPaint")))
'
