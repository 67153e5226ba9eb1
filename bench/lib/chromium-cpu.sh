# shellcheck shell=bash
# The measuring code of bench/tab-cpu.sh and bench/canvas-floor.sh (issue 26),
# sourced by both: opens a URL in a fresh headless Chromium at 1280x720
# (software compositing: `--disable-gpu`), lets it run WARMUP seconds, then
# sums utime+stime (/proc/<pid>/stat) of every process of that Chromium over
# SECONDS_MEASURED seconds, and prints one line: the % of one core used by
# the renderer processes (the page's main thread, its Web Workers and its
# compositor thread), by the GPU/viz process (the display compositor, in
# software here) and by all of Chromium.
#
#   env: SECONDS_MEASURED=30 WARMUP=8 DONUT_CHROMIUM=/usr/bin/chromium
#
# Defines: chromium, measured, warmup, tck, cores, pids (killed on exit),
# free_port, ticks_of, chromium_cpu, header, serve_show, fleet.

chromium=${DONUT_CHROMIUM:-/usr/bin/chromium}
measured=${SECONDS_MEASURED:-30}
warmup=${WARMUP:-8}
tck=$(getconf CLK_TCK)
cores=$(nproc)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# "<pid> <type> <ticks>" for every process whose command line names $1.
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

# The run's first line: time, machine, load, Chromium, method.
header() {
  echo "# $(date -u +%FT%TZ) $(uname -m) ${cores} cores, load $(cut -d' ' -f1-3 /proc/loadavg); $("$chromium" --version 2>/dev/null); ${measured} s per measurement after ${warmup} s, % of one core"
}

# chromium_cpu URL LABEL [NOTE_FN]: measures URL (see above) and prints one
# line starting with LABEL; NOTE_FN, if given, is called after the warm-up
# and its output (one word or a few) goes into the line.
chromium_cpu() {
  local url=$1 label=$2 note_fn=${3:-} profile chrome before after note=""
  profile=$(mktemp -d /tmp/donut-tabcpu-XXXXXX)
  "$chromium" --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --window-size=1280,720 --user-data-dir="$profile" \
    "$url" >/dev/null 2>&1 & chrome=$!
  pids+=("$chrome")
  sleep "$warmup"
  [ -n "$note_fn" ] && note=$("$note_fn")
  before=$(ticks_of "$profile")
  sleep "$measured"
  after=$(ticks_of "$profile")
  python3 - "$label" "$note" "$measured" "$tck" <<PY
import sys
label, note, secs, tck = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
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
print(f"{label} {note}  renderer {pct(render):5.1f}%  gpu {pct(gpu):5.1f}%  all chromium {pct(total):5.1f}%  ({', '.join(f'{k} {pct(x):.1f}%' for k, x in sorted(by.items()))})")
PY
  kill "$chrome" 2>/dev/null || true
  wait "$chrome" 2>/dev/null || true
  # Chromium's last child may still be writing its profile.
  rm -rf "$profile" 2>/dev/null || { sleep 1; rm -rf "$profile" 2>/dev/null || true; }
}

# Serves the show with `donut` binary $1 on a free port and one native
# worker (pids appended to `pids`); sets `port`, `server` and `worker`.
serve_show() {
  local bin=$1
  port=$(free_port)
  "$bin" serve --listen "127.0.0.1:$port" >/dev/null 2>&1 & server=$!
  pids+=("$server")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/api/stats" >/dev/null && break; sleep 0.1; done
  "$bin" work --server "ws://127.0.0.1:$port" --threads 1 >/dev/null 2>&1 & worker=$!
  pids+=("$worker")
}

# "viewers=N workers=M" from the show's /api/stats.
fleet() {
  curl -sf "http://127.0.0.1:$port/api/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("viewers=%s workers=%s" % (s["viewers"], s["workers"]))' || echo "viewers=? workers=?"
}
