//! The wasm build renders exactly the bytes the native build does.
//!
//! The server verifies browser results by re-rendering natively, so a single
//! differing byte between the `wasm32-unknown-unknown` build and the native
//! build would make honest browsers look like cheaters. This test runs the
//! real wasm of the worker crate in Node's V8 (the engine of the Chromium the
//! browser tests use; an embedded interpreter such as wasmi took minutes for
//! the same work) and compares, frame by frame, `donut_shared::digest::frame_digest` (the exact
//! bits of each frame's rotation sines and cosines plus its 1760 bytes)
//! against the native computation, for more than 10,000 frames spread over
//! the whole `u64` range.
//!
//! It checks two artifacts:
//! - a fresh `cargo build --release --target wasm32-unknown-unknown` of the
//!   worker crate (built by this test into `wasm-selftest` under the cargo
//!   target directory, `$CARGO_TARGET_DIR` or `target/`, so it can
//!   never silently pass on a stale or missing build), and
//! - the shipped artifact `www/pkg/worker/donut_worker_bg.wasm` that the
//!   server embeds and browsers load (post-processed by wasm-bindgen and
//!   wasm-opt); without it the test fails and says to run `./build.sh`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use donut_shared::digest::{frame_digest, pose_digest, scripted_scene};

/// Loads the module named by `$WASM` with every import stubbed to throw (the
/// digest export is pure computation and must never call out), reads
/// little-endian u64 frame numbers on stdin and writes the export named by
/// `$EXPORT` of each as little-endian u64s on stdout. Only a
/// loader: all the logic under test is in the wasm.
const NODE_HARNESS: &str = r#"
const fs = require('fs');
const mod = new WebAssembly.Module(fs.readFileSync(process.env.WASM));
const imports = {};
for (const imp of WebAssembly.Module.imports(mod)) {
  if (imp.kind !== 'function') throw new Error(`unexpected ${imp.kind} import ${imp.name}`);
  (imports[imp.module] ??= {})[imp.name] = () => {
    throw new Error(`selftest called import ${imp.module}.${imp.name}`);
  };
}
const digest = new WebAssembly.Instance(mod, imports).exports[process.env.EXPORT];
const frames = new BigUint64Array(new Uint8Array(fs.readFileSync(0)).buffer);
const digests = new BigUint64Array(frames.length);
for (let i = 0; i < frames.length; i++) {
  digests[i] = BigInt.asUintN(64, digest(BigInt.asIntN(64, frames[i])));
}
process.stdout.write(Buffer.from(digests.buffer));
"#;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the worker crate for wasm32 in release mode and returns its path.
fn build_fresh_wasm() -> PathBuf {
    let root = workspace_root();
    // Under the caller's target directory, if it chose one, so that a
    // custom CARGO_TARGET_DIR keeps the source tree free of build output.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("wasm-selftest");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
        .args(["-p", "donut-worker-wasm", "--target-dir"])
        .arg(&target_dir)
        .status()
        .expect("running cargo to build the worker wasm");
    assert!(
        status.success(),
        "building the worker for wasm32 failed; install the target with \
         `rustup target add wasm32-unknown-unknown` (./build.sh does this)"
    );
    target_dir.join("wasm32-unknown-unknown/release/donut_worker_wasm.wasm")
}

/// The digest of every frame in `frames` as rendered by the wasm at `path`,
/// through its export `export`.
fn wasm_digests(path: &Path, export: &str, frames: &[u64]) -> Vec<u64> {
    assert!(
        path.exists(),
        "{} is missing; run ./build.sh",
        path.display()
    );
    let mut node = Command::new("node")
        .args(["-e", NODE_HARNESS])
        .env("WASM", path)
        .env("EXPORT", export)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("running `node` (Node 20 or later must be installed)");
    let input: Vec<u8> = frames.iter().flat_map(|f| f.to_le_bytes()).collect();
    // Write from a thread so neither side blocks on a full pipe.
    let mut stdin = node.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = node.wait_with_output().expect("waiting for node");
    writer
        .join()
        .expect("writer thread")
        .expect("writing frames to node");
    assert!(
        output.status.success(),
        "node failed running {}",
        path.display()
    );
    assert_eq!(
        output.stdout.len(),
        frames.len() * 8,
        "node returned a short answer"
    );
    output
        .stdout
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")))
        .collect()
}

/// The frames compared: edges, runs at the start and across interesting
/// boundaries, every power of two and its neighbours, and a deterministic
/// pseudo-random spread over the whole u64 range.
fn frames_under_test() -> Vec<u64> {
    let mut frames: Vec<u64> = vec![
        0,
        1,
        59,
        60,
        61,
        1_000_000,
        (1 << 32) + 7,
        1 << 53,
        u64::MAX,
    ];
    frames.extend(0..2_000);
    for base in [1u64 << 32, 1 << 53, 1 << 63, u64::MAX - 499] {
        frames.extend((0..500).map(|k| base.wrapping_sub(250).wrapping_add(k)));
    }
    for bit in 0..64 {
        let p = 1u64 << bit;
        frames.extend([p - 1, p, p + 1]);
    }
    // splitmix64, fixed seed: reproducible, spread over all 64 bits.
    let mut state = 0x5eed_d0d0_u64;
    frames.extend((0..7_000).map(|_| {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }));
    frames.sort_unstable();
    frames.dedup();
    frames
}

/// Runs `export` of the wasm at `path` on every input and compares with
/// `native`, reporting every mismatch (input and both digests).
fn assert_same_digests(path: &Path, export: &str, inputs: &[u64], native: impl Fn(u64) -> u64) {
    let wasm = wasm_digests(path, export, inputs);
    compare_digests(&path.display().to_string(), export, inputs, &wasm, native);
}

/// Compares the digests `wasm` of `inputs`, computed by `what`, with
/// `native`, reporting every mismatch (input and both digests).
fn compare_digests(
    what: &str,
    export: &str,
    inputs: &[u64],
    wasm: &[u64],
    native: impl Fn(u64) -> u64,
) {
    assert_eq!(wasm.len(), inputs.len(), "{what}: a short answer");
    let mismatches: Vec<String> = inputs
        .iter()
        .zip(wasm)
        .filter_map(|(&k, &w)| {
            let n = native(k);
            (w != n).then(|| format!("{export}({k}): wasm {w:016x} native {n:016x}"))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} digests differ between {what} and native:\n{}",
        mismatches.len(),
        inputs.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
}

/// Every frame under test of the idle spin, and the first 1,500 frames of
/// a steered scene (the scripted input log of
/// `donut_shared::digest::scripted_scene`: pushes, friction and clamping
/// are integer arithmetic in `shared`, the same on both targets).
fn assert_matches_native(path: &Path) {
    let frames = frames_under_test();
    assert!(frames.len() >= 10_000, "only {} frames", frames.len());
    assert_same_digests(path, "donut_selftest_digest", &frames, frame_digest);
    let steered: Vec<u64> = (0..1_500).collect();
    assert_same_digests(path, "donut_selftest_scripted_digest", &steered, |k| {
        pose_digest(scripted_scene(k).pose)
    });
}

#[test]
fn fresh_wasm_build_matches_native() {
    assert_matches_native(&build_fresh_wasm());
}

#[test]
fn shipped_wasm_matches_native() {
    let shipped = workspace_root().join("www/pkg/worker/donut_worker_bg.wasm");
    assert!(
        shipped.exists(),
        "{} is missing: build the wasm packages with ./build.sh (or run the \
         whole suite with ./build.sh test)",
        shipped.display()
    );
    assert_matches_native(&shipped);
}

// ---------------------------------------------------------------------
// The compatibility build (www/pkg/worker-compat): WebAssembly 1.0, for
// engines without SIMD, reference types and the rest (see build.sh).

/// The same as `NODE_HARNESS`, but ES5 and through the i32-only buffer
/// exports (`donut_selftest_buffer`, `donut_selftest_digests`), so that it
/// runs in Node 10 (V8 6.8, about Chromium 69), which has neither `??=`
/// nor the BigInt-to-i64 boundary. `$SCRIPTED` picks the digest.
const BUFFER_HARNESS: &str = r#"
var fs = require('fs');
var mod = new WebAssembly.Module(fs.readFileSync(process.env.WASM));
var imports = {};
WebAssembly.Module.imports(mod).forEach(function (imp) {
  if (imp.kind !== 'function') throw new Error('unexpected ' + imp.kind + ' import ' + imp.name);
  imports[imp.module] = imports[imp.module] || {};
  imports[imp.module][imp.name] = function () {
    throw new Error('selftest called import ' + imp.module + '.' + imp.name);
  };
});
var ex = new WebAssembly.Instance(mod, imports).exports;
var input = fs.readFileSync(0);
var at = ex.donut_selftest_buffer(input.length) >>> 0;
new Uint8Array(ex.memory.buffer, at, input.length).set(input);
ex.donut_selftest_digests(Number(process.env.SCRIPTED));
process.stdout.write(Buffer.from(new Uint8Array(ex.memory.buffer, at, input.length)));
"#;

/// The npm tools directory `./build.sh test` installs into (`$DONUT_TOOLS`,
/// default `~/.cache/donut-tools`).
fn tools_dir() -> PathBuf {
    std::env::var_os("DONUT_TOOLS").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("$HOME or $DONUT_TOOLS");
            Path::new(&home).join(".cache/donut-tools")
        },
        PathBuf::from,
    )
}

/// The old Node binaries the tests run, with the Chromium of their V8.
const OLD_NODES: [(&str, &str); 3] = [
    ("node10", "V8 6.8, about Chromium 69"),
    ("node14", "V8 8.4, about Chromium 84"),
    ("node16", "V8 9.4, about Chromium 94"),
];

/// The binary of `name` (`node10`...), failing if it is missing.
fn old_node(name: &str) -> PathBuf {
    let path = tools_dir().join("node_modules").join(name).join("bin/node");
    assert!(
        path.is_file(),
        "{} is missing: ./build.sh test installs it (npm, into $DONUT_TOOLS)",
        path.display()
    );
    path
}

/// Runs `script` in `node` with `env`, `input` on stdin; returns whether
/// it succeeded, its stdout and its stderr.
fn run_node(
    node: &Path,
    script: &str,
    env: &[(&str, &Path)],
    input: Vec<u8>,
) -> (bool, Vec<u8>, String) {
    let mut cmd = Command::new(node);
    cmd.args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", node.display()));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("waiting for node");
    writer
        .join()
        .expect("writer thread")
        .expect("writing to node");
    (
        output.status.success(),
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The digests of `frames` by the wasm at `path`, run in `node` through
/// the buffer exports.
fn buffer_digests(node: &Path, path: &Path, scripted: bool, frames: &[u64]) -> Vec<u64> {
    let input: Vec<u8> = frames.iter().flat_map(|f| f.to_le_bytes()).collect();
    let flag = Path::new(if scripted { "1" } else { "0" });
    let (ok, out, err) = run_node(
        node,
        BUFFER_HARNESS,
        &[("WASM", path), ("SCRIPTED", flag)],
        input,
    );
    assert!(
        ok,
        "{} failed running {}:\n{err}",
        node.display(),
        path.display()
    );
    out.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")))
        .collect()
}

/// Every frame under test and the steered scene, as `assert_matches_native`,
/// by the wasm at `path` in `node`.
fn assert_buffer_matches_native(node: &Path, path: &Path) {
    let what = format!("{} in {}", path.display(), node.display());
    let frames = frames_under_test();
    let wasm = buffer_digests(node, path, false, &frames);
    compare_digests(
        &what,
        "donut_selftest_digests",
        &frames,
        &wasm,
        frame_digest,
    );
    let steered: Vec<u64> = (0..1_500).collect();
    let wasm = buffer_digests(node, path, true, &steered);
    compare_digests(&what, "donut_selftest_digests", &steered, &wasm, |k| {
        pose_digest(scripted_scene(k).pose)
    });
}

fn shipped(sub: &str) -> PathBuf {
    let path = workspace_root()
        .join("www/pkg")
        .join(sub)
        .join("donut_worker_bg.wasm");
    assert!(
        path.exists(),
        "{} is missing: build the wasm packages with ./build.sh (or run the \
         whole suite with ./build.sh test)",
        path.display()
    );
    path
}

#[test]
fn shipped_compat_wasm_matches_native() {
    let path = shipped("worker-compat");
    assert_matches_native(&path);
    assert_buffer_matches_native(Path::new("node"), &path);
}

/// The compatibility worker runs in the V8s of Chromium 69, 84 and 94 (the
/// engines of 2020-2023 smart TVs) and renders exactly the native bytes
/// there.
#[test]
fn compat_wasm_matches_native_in_old_v8s() {
    let path = shipped("worker-compat");
    for (name, v8) in OLD_NODES {
        eprintln!("{name} ({v8})");
        assert_buffer_matches_native(&old_node(name), &path);
    }
}

/// The default build does not even compile there (so the test above is the
/// compatibility build's doing, and the page must choose between them).
#[test]
fn the_default_wasm_does_not_compile_in_old_v8s() {
    let path = shipped("worker");
    let script = "new WebAssembly.Module(require('fs').readFileSync(process.env.WASM))";
    for (name, v8) in OLD_NODES {
        let (ok, _, err) = run_node(&old_node(name), script, &[("WASM", &path)], Vec::new());
        assert!(!ok, "{} compiled in {name} ({v8})", path.display());
        assert!(err.contains("CompileError"), "{name}: {err}");
    }
}
