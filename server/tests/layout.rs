//! The import rule of `server/src` (written at the top of `lib.rs` and in
//! ARCHITECTURE.md's layout section), checked on the source itself.
//!
//! The test reads every `server/src/**/*.rs`, takes each module's
//! `crate::…` and `super::…` paths outside comments (`use` lines, brace
//! groups and paths inline in code alike), resolves each to the deepest
//! module file it names, and fails on:
//!
//! - a capability unit (a top-level file or folder) missing from [`RANKS`];
//! - an *upward* import: a module importing a unit of a higher rank (so
//!   nothing below `state` imports `state`, and no domain imports `config`);
//! - a cycle of modules that crosses a capability folder (a strongly
//!   connected component of the module graph holding modules of two
//!   units). A cycle inside one folder (`cluster/node` ↔ `cluster/tunnel`)
//!   is that folder's own business.
//!
//! A second test fails if a module outside `engine.rs` and `cluster/` names
//! the cluster's node type (`cluster::Node`): the engine is the one seam.
//!
//! Comments (doc links such as `[`x`](crate::y)`, trailing and block
//! comments) and string literals name no dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each capability unit's rank: a module may import units of its own rank
/// or lower, never higher. Same-rank units may import each other as long as
/// no module cycle crosses them.
const RANKS: &[(&str, u8)] = &[
    // The binary and the crate root name every part.
    ("main", 7),
    ("lib", 7),
    // Wires the parts: the one module that knows all.
    ("app", 6),
    // The two endpoints run a protocol over one connection, against the state.
    ("endpoint", 5),
    // The shared state; `donut work` (a client, beside it).
    ("state", 4),
    ("native_worker", 4),
    // The one seam between the connections and what runs the stream.
    ("engine", 3),
    // Flags, and every component's config derived from them.
    ("config", 2),
    // Several nodes through Redis, given the parts it needs.
    ("cluster", 1),
    // The domains.
    ("stream", 0),
    ("trust", 0),
    ("p2p", 0),
    ("conn", 0),
    ("edge", 0),
    ("metrics", 0),
];

type Module = Vec<String>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module file under `src`, by module path (`stream::core`).
fn modules() -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read server/src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = src();
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(&root)
                .expect("under src")
                .with_extension("");
            let mut segs: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if segs.last().is_some_and(|s| s == "mod") {
                segs.pop();
            }
            (segs, path)
        })
        .collect()
}

/// The source with its comments and literals blanked out (doc links are
/// not imports, nor is a path inside a string): `//` to the line's end,
/// nested `/* */`, string, raw string, byte string and char literals.
/// Line breaks are kept.
fn code(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    // Copies nothing but the line breaks of `b[from..to]`.
    let blank = |out: &mut String, from: usize, to: usize| {
        for &c in &b[from..to.min(b.len())] {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some(hashes) = raw_string_start(b, i) {
            // r"…", r#"…"#, br"…": ends at a quote and as many hashes.
            let open = b[i..]
                .iter()
                .position(|&c| c == b'"')
                .map_or(b.len(), |n| i + n);
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let end = b[open + 1..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |n| open + 1 + n + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                // Past the escaped character, which may be a quote ('\'').
                b.get(i + 3..)
                    .and_then(|rest| rest.iter().position(|&c| c == b'\''))
                    .map(|n| i + 3 + n + 1)
            } else {
                let width = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + width) == Some(&b'\'')).then_some(i + 2 + width)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let width = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[i..i + width]);
            i += width;
        }
    }
    out
}

/// At `b[i]`, the number of `#`s of a raw string literal's opening
/// (`r"`, `r#"`, `br"`), if one starts there and not inside a name.
fn raw_string_start(b: &[u8], i: usize) -> Option<usize> {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if i > 0 && ident(b[i - 1]) {
        return None;
    }
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    (b.get(j + hashes) == Some(&b'"')).then_some(hashes)
}

/// The paths a `use` tree starting at `s` names, with `prefix` before
/// each: `a::b`, `a::{b, c::d}`, `a::*`, `{a, b}`.
fn paths(s: &[u8], mut i: usize, prefix: &[String], out: &mut Vec<Module>) -> usize {
    let mut segs = prefix.to_vec();
    loop {
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= s.len() {
            out.push(segs);
            return i;
        }
        let c = s[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
                i += 1;
            }
            segs.push(String::from_utf8_lossy(&s[start..i]).into_owned());
            if s[i..].starts_with(b"::") {
                i += 2;
                continue;
            }
            out.push(segs);
            return i;
        }
        if c == b'{' {
            i += 1;
            loop {
                i = paths(s, i, &segs, out);
                while i < s.len() && s[i].is_ascii_whitespace() {
                    i += 1;
                }
                match s.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => return i + 1,
                    _ => return i,
                }
                while i < s.len() && s[i].is_ascii_whitespace() {
                    i += 1;
                }
                if s.get(i) == Some(&b'}') {
                    return i + 1;
                }
            }
        }
        out.push(segs);
        return i;
    }
}

/// The module graph: each module to the modules it imports.
fn graph(mods: &BTreeMap<Module, PathBuf>) -> BTreeMap<Module, BTreeSet<Module>> {
    named(mods)
        .into_iter()
        .map(|(m, (deps, _))| (m, deps))
        .collect()
}

/// Each module's imports: the modules, and every crate path it names.
fn named(
    mods: &BTreeMap<Module, PathBuf>,
) -> BTreeMap<Module, (BTreeSet<Module>, BTreeSet<Module>)> {
    let resolve = |segs: &[String]| -> Option<Module> {
        (1..=segs.len())
            .rev()
            .map(|n| segs[..n].to_vec())
            .find(|m| mods.contains_key(m))
    };
    mods.iter()
        .map(|(module, path)| {
            let text = code(&std::fs::read_to_string(path).expect("read a module"));
            let bytes = text.as_bytes();
            let mut deps = BTreeSet::new();
            let mut names = BTreeSet::new();
            let mut at = 0;
            while let Some(found) = text[at..].find("::") {
                let end = at + found;
                at = end + 2;
                let word_start = text[..end]
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(0, |p| p + 1);
                let word = &text[word_start..end];
                let part_of_a_path = text[..word_start].ends_with("::");
                let mut child = module.clone();
                child.push(word.to_owned());
                if !part_of_a_path && (word == "self" || mods.contains_key(&child)) {
                    // `self::x` or a child module's path (`pub use node::Node`
                    // in a `mod.rs`): a re-export is an import too.
                    let from = if word == "self" { at } else { word_start };
                    let mut found = Vec::new();
                    paths(bytes, from, module, &mut found);
                    for p in found {
                        if let Some(dep) = resolve(&p)
                            && &dep != module
                        {
                            deps.insert(dep);
                        }
                        names.insert(p);
                    }
                    continue;
                }
                if word != "crate" && word != "super" {
                    continue;
                }
                // `super::super::` is one path: handled from its first word.
                if text[..word_start].ends_with("super::") {
                    continue;
                }
                let mut base: Module = if word == "crate" {
                    Vec::new()
                } else {
                    // This file's module is `module`; `super` is its parent.
                    module[..module.len().saturating_sub(1)].to_vec()
                };
                let mut i = at;
                while text[i..].starts_with("super::") {
                    base.pop();
                    i += "super::".len();
                }
                let mut found = Vec::new();
                paths(bytes, i, &base, &mut found);
                for p in found {
                    if let Some(dep) = resolve(&p)
                        && &dep != module
                    {
                        deps.insert(dep);
                    }
                    names.insert(p);
                }
            }
            (module.clone(), (deps, names))
        })
        .collect()
}

fn unit(m: &Module) -> &str {
    &m[0]
}

fn name(m: &Module) -> String {
    m.join("::")
}

fn rank(u: &str) -> Option<u8> {
    RANKS.iter().find(|(n, _)| *n == u).map(|&(_, r)| r)
}

/// Tarjan's strongly connected components.
fn components(g: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Walk<'a> {
        g: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        out: Vec<Vec<Module>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Module) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on.insert(v);
            for w in self.g.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    comp.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                self.out.push(comp);
            }
        }
    }
    let mut walk = Walk {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.out
}

#[test]
fn the_parser_reads_use_trees_and_inline_paths() {
    let mut out = Vec::new();
    paths(b"{a::b, c::{d, e::F}, g::*}; x", 0, &[], &mut out);
    let got: Vec<String> = out.iter().map(name).collect();
    assert_eq!(got, ["a::b", "c::d", "c::e::F", "g"]);
    let mods = modules();
    let g = graph(&mods);
    // A sample of edges the parser must see, of each form.
    let has = |from: &str, to: &str| {
        g.iter()
            .any(|(m, d)| name(m) == from && d.iter().any(|t| name(t) == to))
    };
    assert!(has("app", "state"), "a plain `use crate::…` line");
    assert!(has("app", "stream::broadcaster"), "a `use crate::…` line");
    assert!(
        has("cluster::node", "cluster::lease"),
        "a `use super::…` line"
    );
    assert!(
        has("cluster", "cluster::node"),
        "a re-export, `pub use node::Node`"
    );
    assert!(
        has("stream::scheduler", "stream::scheduler::worker"),
        "`use self::…`"
    );
    assert!(mods.len() > 40, "every module file is read");
}

#[test]
fn comments_and_literals_name_no_path() {
    let src = "use crate::a; // crate::b\n\
               let s = \"crate::c // not a comment\"; crate::d(); /* crate::e /* nested */ crate::f */\n\
               let r = r#\"crate::g \"# ; let c = '\\''; let l: &'static str = x::<'a>(); crate::h\n\
               let u = \"\\\"crate::i\"; let k = b\"crate::j\"; crate::k";
    let kept = code(src);
    // An escaped quote ends its char literal where it should: all four
    // bytes are blanked, and what follows is code again.
    assert_eq!(code("'\\''x"), "    x");
    for gone in [
        "crate::b", "crate::c", "crate::e", "crate::f", "crate::g", "crate::i", "crate::j",
    ] {
        assert!(!kept.contains(gone), "{gone} survived in {kept:?}");
    }
    for stays in [
        "crate::a", "crate::d", "crate::h", "crate::k", "'static", "'a>",
    ] {
        assert!(kept.contains(stays), "{stays} lost in {kept:?}");
    }
    assert_eq!(
        kept.lines().count(),
        src.lines().count(),
        "line breaks are kept"
    );
}

#[test]
fn imports_point_down_and_no_cycle_crosses_a_capability_folder() {
    let mods = modules();
    assert!(
        mods.keys().any(|m| name(m) == "stream::core"),
        "the layout moved: {:?}",
        mods.keys().map(name).collect::<Vec<_>>()
    );
    let g = graph(&mods);
    let mut found = BTreeSet::new();
    let mut unranked = BTreeSet::new();
    for (from, deps) in &g {
        let Some(rf) = rank(unit(from)) else {
            unranked.insert(unit(from).to_owned());
            continue;
        };
        for to in deps {
            let Some(rt) = rank(unit(to)) else {
                unranked.insert(unit(to).to_owned());
                continue;
            };
            if unit(from) != unit(to) && rt > rf {
                found.insert((name(from), name(to), "upward"));
            }
        }
    }
    assert!(
        unranked.is_empty(),
        "capability units missing from RANKS (say where they sit): {unranked:?}"
    );
    for comp in components(&g) {
        let units: BTreeSet<&str> = comp.iter().map(unit).collect();
        if units.len() > 1 {
            // Every edge inside the component that crosses units is part of
            // the cycle.
            for from in &comp {
                for to in &g[from] {
                    if comp.contains(to) && unit(from) != unit(to) {
                        found.insert((name(from), name(to), "cycle"));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "imports against the rule (lib.rs, \"Imports\"): {found:?}"
    );
}

/// The engine is the one seam: outside `engine.rs` and `cluster/`, no
/// module names the cluster's node type (they ask the [`Engine`] for
/// figures, bans, routing; the cluster gets `NodeDeps`, never the state).
///
/// [`Engine`]: donut_server::engine::Engine
#[test]
fn only_the_engine_and_the_cluster_name_the_node() {
    let mods = modules();
    let node = |p: &Module| {
        let p: Vec<&str> = p.iter().map(String::as_str).collect();
        matches!(p[..], ["cluster", "Node", ..] | ["cluster", "node", ..])
    };
    let mut named_by = Vec::new();
    for (module, (_, names)) in named(&mods) {
        if unit(&module) == "cluster" || name(&module) == "engine" || name(&module) == "lib" {
            continue;
        }
        if names.iter().any(node) {
            named_by.push(name(&module));
        }
    }
    assert!(
        named_by.is_empty(),
        "the cluster's node named past the engine seam by {named_by:?}"
    );
    // The check sees the engine's own use.
    let engine = named(&mods)
        .into_iter()
        .find(|(m, _)| name(m) == "engine")
        .expect("engine.rs");
    assert!(engine.1.1.iter().any(node), "engine.rs names cluster::Node");
}

/// ARCHITECTURE.md's layout tree names every module file there is, each in
/// its own unit's entry (`stream/ … acks …`), and
/// `lib.rs`'s module doc every capability unit.
#[test]
fn the_documented_layout_matches_the_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let arch = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let start = arch.find("\nserver/src/\n").expect("the layout tree");
    let end = start + arch[start..].find("\n```").expect("the tree's end");
    let tree = &arch[start..end];
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let word = |text: &str, w: &str| {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|t| t == w)
    };
    // Each top-level entry of the tree (`├── stream/ …` and its
    // continuation lines), by the names its head gives (`lib.rs, main.rs`).
    let mut entries: Vec<(Vec<String>, String)> = Vec::new();
    for line in tree.lines() {
        let head = line.split_once("├── ").or_else(|| line.split_once("└── "));
        match head {
            Some((_, rest)) => {
                let names = rest
                    .split("  ")
                    .next()
                    .unwrap_or_default()
                    .split(", ")
                    .map(|n| {
                        n.trim()
                            .trim_end_matches('/')
                            .trim_end_matches(".rs")
                            .to_owned()
                    })
                    .collect();
                entries.push((names, rest.to_owned()));
            }
            None => {
                if let Some((_, text)) = entries.last_mut() {
                    text.push('\n');
                    text.push_str(line);
                }
            }
        }
    }
    let mut missing = Vec::new();
    for module in modules().keys() {
        let last = module.last().expect("a module path");
        if last == "tests" {
            continue;
        }
        // A module is named in its own unit's entry, not anywhere.
        let entry = entries
            .iter()
            .find(|(names, _)| names.iter().any(|n| n == unit(module)));
        if !entry.is_some_and(|(_, text)| word(text, last)) {
            missing.push(format!("ARCHITECTURE.md: {}", name(module)));
        }
    }
    for &(unit, _) in RANKS {
        if unit != "lib" && unit != "main" && !lib.contains(&format!("[`{unit}`]")) {
            missing.push(format!("lib.rs: {unit}"));
        }
    }
    assert!(
        missing.is_empty(),
        "modules the layout docs do not name: {missing:?}"
    );
}
