//! The compatibility viewer (`www/pkg/viewer-compat`, WebAssembly 1.0 for
//! engines without SIMD or reference types) decodes every batch to exactly
//! the frames the default viewer (`www/pkg/viewer`) and the native build do,
//! in today's V8 and in the V8s of Chromium 69, 84 and 94.
//!
//! The shipped wasm files are run in Node through the viewer's i32-only
//! selftest exports (`donut_viewer::selftest`: the player's decoding, then
//! each frame's text): batches of real frames, idle and steered, of every
//! size up to `MAX_BATCH_FRAMES`, in every codec, plus damaged messages
//! (which every build must refuse alike). The old Node binaries come from
//! npm (`./build.sh test` installs them into `$DONUT_TOOLS`, default
//! `~/.cache/donut-tools`); without them the test fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use donut_shared::PACKED_LEN;
use donut_shared::digest::scripted_scene;
use donut_shared::wire::{Codec, Frames, MAX_BATCH_FRAMES};

/// Loads the module named by `$WASM` with every import stubbed to throw,
/// reads `[u32 len][message]` records on stdin and writes, per message,
/// `[u32 frames or 0xffffffff][frames x (u64 frame, u64 digest)]`. ES5, so
/// that it runs in Node 10.
const HARNESS: &str = r#"
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
var out = [];
for (var pos = 0; pos < input.length;) {
  var len = input.readUInt32LE(pos);
  pos += 4;
  var at = ex.donut_selftest_buffer(len) >>> 0;
  new Uint8Array(ex.memory.buffer, at, len).set(input.subarray(pos, pos + len));
  pos += len;
  var n = ex.donut_selftest_decode() >>> 0;
  var head = Buffer.alloc(4);
  head.writeUInt32LE(n, 0);
  out.push(head);
  if (n !== 0xffffffff) {
    var o = ex.donut_selftest_output() >>> 0;
    out.push(Buffer.from(new Uint8Array(ex.memory.buffer, o, n * 16)));
  }
}
process.stdout.write(Buffer.concat(out));
"#;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shipped(sub: &str) -> PathBuf {
    let path = workspace_root()
        .join("www/pkg")
        .join(sub)
        .join("donut_viewer_bg.wasm");
    assert!(
        path.is_file(),
        "{} is missing: build the wasm packages with ./build.sh",
        path.display()
    );
    path
}

/// The npm tools directory (`$DONUT_TOOLS`, default `~/.cache/donut-tools`).
fn tools_dir() -> PathBuf {
    std::env::var_os("DONUT_TOOLS").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("$HOME or $DONUT_TOOLS");
            Path::new(&home).join(".cache/donut-tools")
        },
        PathBuf::from,
    )
}

/// The old Node binaries, with the Chromium of their V8.
const OLD_NODES: [(&str, &str); 3] = [
    ("node10", "V8 6.8, about Chromium 69"),
    ("node14", "V8 8.4, about Chromium 84"),
    ("node16", "V8 9.4, about Chromium 94"),
];

fn old_node(name: &str) -> PathBuf {
    let path = tools_dir().join("node_modules").join(name).join("bin/node");
    assert!(
        path.is_file(),
        "{} is missing: ./build.sh test installs it (npm, into $DONUT_TOOLS)",
        path.display()
    );
    path
}

/// A `Frames` message of the packed frames `packed`, from `start`.
fn message(start: u64, timeline: u32, codec: Codec, packed: &[[u8; PACKED_LEN]]) -> Vec<u8> {
    let count = packed.len() as u32;
    let mut msg = Frames::header(start, count, timeline, codec).to_vec();
    let flat = packed.as_flattened();
    match codec {
        Codec::Nibble => msg.extend_from_slice(flat),
        Codec::Context => donut_shared::codec::encode(flat, &mut msg).expect("valid frames"),
        Codec::Primed => donut_shared::codec::encode_primed(flat, &mut msg).expect("valid frames"),
    }
    msg
}

/// The batches under test: idle frames over the whole `u64` range and
/// steered frames, every size from 1 to `MAX_BATCH_FRAMES` represented,
/// every codec; then damaged copies of some (cut short, a byte flipped).
fn batches() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // splitmix64, fixed seed.
    let mut state = 0xc0de_d0d0_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut sizes = vec![1u32, 2, 3, 59, 60, 61, 120, 599, MAX_BATCH_FRAMES];
    sizes.extend((0..20).map(|_| 1 + (next() % u64::from(MAX_BATCH_FRAMES)) as u32));
    let starts = [
        0u64,
        1,
        1_000_000,
        (1 << 32) - 7,
        1 << 53,
        u64::MAX - 2 * 600,
    ];
    for (i, &count) in sizes.iter().enumerate() {
        let codec = Codec::ALL[(i + 1) % Codec::ALL.len()];
        let start = if i < starts.len() {
            starts[i]
        } else {
            next() >> 1
        };
        let idle: Vec<[u8; PACKED_LEN]> = (0..u64::from(count))
            .map(|k| {
                let mut p = [0u8; PACKED_LEN];
                donut_shared::render_packed(start.wrapping_add(k), &mut p);
                p
            })
            .collect();
        out.push(message(start, i as u32, codec, &idle));
        // The same size, steered (drags and their spin-down).
        let steered: Vec<[u8; PACKED_LEN]> = (0..u64::from(count))
            .map(|k| {
                let mut p = [0u8; PACKED_LEN];
                donut_shared::render_pose_packed(scripted_scene(i as u64 * 50 + k).pose, &mut p);
                p
            })
            .collect();
        out.push(message(start / 2, 7 + i as u32, codec, &steered));
    }
    let whole = out.len();
    for i in (0..whole).step_by(5) {
        let good = out[i].clone();
        out.push(good[..good.len() - 1].to_vec());
        let mut flipped = good.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x5a;
        out.push(flipped);
    }
    out
}

/// Runs every batch through the wasm at `path` in `node`; per batch, the
/// records (`None`: refused).
fn wasm_records(node: &Path, path: &Path, batches: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
    let mut input = Vec::new();
    for b in batches {
        input.extend_from_slice(&(b.len() as u32).to_le_bytes());
        input.extend_from_slice(b);
    }
    let mut child = Command::new(node)
        .args(["-e", HARNESS])
        .env("WASM", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", node.display()));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("waiting for node");
    writer
        .join()
        .expect("writer thread")
        .expect("writing to node");
    assert!(
        output.status.success(),
        "{} failed running {}:\n{}",
        node.display(),
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut out = Vec::new();
    let mut rest = output.stdout.as_slice();
    for _ in batches {
        let (head, tail) = rest.split_at_checked(4).expect("a record head");
        let n = u32::from_le_bytes(head.try_into().expect("4 bytes"));
        if n == u32::MAX {
            out.push(None);
            rest = tail;
        } else {
            let (records, tail) = tail.split_at_checked(n as usize * 16).expect("the records");
            out.push(Some(records.to_vec()));
            rest = tail;
        }
    }
    assert!(rest.is_empty(), "{} trailing bytes", rest.len());
    out
}

/// Asserts `got` (the wasm at `what`) equals the native decoding, batch by
/// batch.
fn assert_same(what: &str, batches: &[Vec<u8>], got: &[Option<Vec<u8>>]) {
    let mut frames = 0;
    for (i, (b, g)) in batches.iter().zip(got).enumerate() {
        let native = donut_viewer::selftest::decode_records(b);
        assert_eq!(
            g.as_ref().map(Vec::len),
            native.as_ref().map(Vec::len),
            "{what}: batch {i} decodes to another number of frames than natively"
        );
        assert!(
            g == &native,
            "{what}: batch {i} decodes to other frames than natively"
        );
        frames += native.map_or(0, |r| r.len() / 16);
    }
    assert!(frames >= 10_000, "only {frames} frames compared");
    eprintln!(
        "{what}: {} batches, {frames} frames, all as native",
        batches.len()
    );
}

#[test]
fn the_default_and_compat_viewers_decode_every_batch_as_native() {
    let batches = batches();
    // The damaged copies are refused natively (a test of the test).
    assert!(
        batches
            .iter()
            .any(|b| donut_viewer::selftest::decode_records(b).is_none())
    );
    let node = Path::new("node");
    for sub in ["viewer", "viewer-compat"] {
        let path = shipped(sub);
        let got = wasm_records(node, &path, &batches);
        assert_same(&format!("{} in node", path.display()), &batches, &got);
    }
}

#[test]
fn the_compat_viewer_decodes_every_batch_as_native_in_old_v8s() {
    let batches = batches();
    let path = shipped("viewer-compat");
    for (name, v8) in OLD_NODES {
        let got = wasm_records(&old_node(name), &path, &batches);
        assert_same(
            &format!("{} in {name} ({v8})", path.display()),
            &batches,
            &got,
        );
    }
}

/// The default viewer does not compile there: the page must choose.
#[test]
fn the_default_viewer_does_not_compile_in_old_v8s() {
    let path = shipped("viewer");
    for (name, v8) in OLD_NODES {
        let out = Command::new(old_node(name))
            .args([
                "-e",
                "new WebAssembly.Module(require('fs').readFileSync(process.env.WASM))",
            ])
            .env("WASM", &path)
            .output()
            .expect("running node");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{} compiled in {name} ({v8})",
            path.display()
        );
        assert!(err.contains("CompileError"), "{name}: {err}");
    }
}
