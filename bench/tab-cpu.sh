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
# pair shares the machine's load.
set -euo pipefail
cd "$(dirname "$0")/.."
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/donut)
chromium=${DONUT_CHROMIUM:-/usr/bin/chromium}
measured=${SECONDS_MEASURED:-30}
warmup=${WARMUP:-8}
rounds=${ROUNDS:-1}
read -r -a pages <<<"${PAGES:-/?contribute=0 /?contribute=1}"
tck=$(getconf CLK_TCK)
cores=$(nproc)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# "<type> <ticks>" for every process whose command line names $1.
ticks_of() {
  local dir=$1 pid cmd type
  for pid in $(pgrep -f -- "$dir" || true); do
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    case $cmd in *"$dir"*) ;; *) continue ;; esac
    type=browser
    [[ $cmd =~ --type=([a-z-]+) ]] && type=${BASH_REMATCH[1]}
    [[ $cmd =~ --utility-sub-type=([a-zA-Z.]+) ]] && type="$type:${BASH_REMATCH[1]}"
    # Fields 14 and 15 after the command name (which may hold spaces).
    awk -v t="$type" -v p="$pid" '{sub(/^.*\) /, ""); print p, t, $12 + $13}' "/proc/$pid/stat" 2>/dev/null || true
  done
}

measure() { # bin page -> one result line
  local bin=$1 page=$2 port profile chrome before after
  port=$(free_port)
  "$bin" serve --listen "127.0.0.1:$port" >/dev/null 2>&1 & local server=$!
  pids+=("$server")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/stats" >/dev/null && break; sleep 0.1; done
  "$bin" work --server "ws://127.0.0.1:$port" --threads 1 >/dev/null 2>&1 & local worker=$!
  pids+=("$worker")
  profile=$(mktemp -d /tmp/donut-tabcpu-XXXXXX)
  "$chromium" --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --window-size=1280,720 --user-data-dir="$profile" \
    "http://127.0.0.1:$port$page" >/dev/null 2>&1 & chrome=$!
  pids+=("$chrome")
  sleep "$warmup"
  local viewers
  viewers=$(curl -sf "http://127.0.0.1:$port/api/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["viewers"], s["workers"])')
  before=$(ticks_of "$profile")
  sleep "$measured"
  after=$(ticks_of "$profile")
  python3 - "$bin" "$page" "$viewers" "$measured" "$tck" <<PY
import sys
bin, page, fleet, secs, tck = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
def parse(s):
    out = {}
    for line in s.strip().splitlines():
        pid, t, ticks = line.split()
        out[pid] = (t, int(ticks))
    return out
b, a = parse("""$before"""), parse("""$after""")
by = {}
for pid, (t, ticks) in a.items():
    d = ticks - b.get(pid, (t, 0))[1]
    by[t] = by.get(t, 0) + d
pct = lambda ticks: 100.0 * ticks / tck / secs
total = sum(by.values())
render = by.get("renderer", 0)
gpu = by.get("gpu-process", 0)
v, w = fleet.split()
print(f"{bin:32} {page:16} viewers={v} workers={w}  renderer {pct(render):5.1f}%  gpu {pct(gpu):5.1f}%  all chromium {pct(total):5.1f}%  ({', '.join(f'{k} {pct(x):.1f}%' for k, x in sorted(by.items()))})")
PY
  kill "$chrome" "$worker" "$server" 2>/dev/null || true
  wait "$chrome" "$worker" "$server" 2>/dev/null || true
  # Chromium's last child may still be writing its profile.
  rm -rf "$profile" 2>/dev/null || { sleep 1; rm -rf "$profile" 2>/dev/null || true; }
}

echo "# $(date -u +%FT%TZ) $(uname -m) ${cores} cores, load $(cut -d' ' -f1-3 /proc/loadavg); $("$chromium" --version 2>/dev/null); ${measured} s per measurement, % of one core"
for r in $(seq "$rounds"); do
  for page in "${pages[@]}"; do
    for bin in "${bins[@]}"; do
      measure "$bin" "$page"
    done
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
