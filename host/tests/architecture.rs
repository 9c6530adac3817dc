//! The house's rules, checked from the source: no module imports, directly
//! or through others, a module that imports it back, and imports only run
//! down the layers that `docs/architecture.md` draws. A cycle or an upward
//! import fails here, naming the files, before it makes two rooms one.
//!
//! Imports are read from the text: `use` trees and `crate::`, `super::`,
//! `self::` and child-module paths, outside comments and `#[cfg(test)]`
//! modules (a file's tests may reach anything). A parent module counts as
//! importing a child only when it names something of it, not for declaring
//! it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The host crate's top-level modules by layer, lowest first. A module may
/// import from its own layer and the ones below; a layer's modules must
/// not form a cycle.
const LAYERS: &[&[&str]] = &[
    // Vocabulary: what every layer speaks.
    &[
        "event",
        "delivery_id",
        "limits",
        "param",
        "rows",
        "rsa_key",
        "status",
        "template",
        "sql_lexer",
        "mapping",
        "schedule",
        "plugin",
    ],
    // The file as written, parsed and checked.
    &["config"],
    // What a run is made of.
    &[
        "source",
        "cursor",
        "extract",
        "diff",
        "state",
        "transform",
        "load",
        "metrics",
    ],
    // The run, and what reads like one.
    &["run", "preview"],
    // Who starts runs and what they do after.
    &["alert", "output", "worker", "api", "serve", "authoring"],
    // The binary's edge.
    &["cli"],
];

/// Modules (file paths relative to `src/`, without `.rs`) and the modules
/// each imports.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn the_host_has_no_import_cycles() {
    let graph = graph(&src_dir());
    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "these modules import each other, directly or through others; move what they share into a module both import:\n{}",
        cycles
            .iter()
            .map(|c| format!("  {}", c.join(" ⇄ ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn imports_run_down_the_layers() {
    let graph = graph(&src_dir());
    let layer_of = |module: &str| {
        let top = module.split('/').next().unwrap_or(module);
        LAYERS.iter().position(|layer| layer.contains(&top))
    };
    let mut upward = Vec::new();
    let mut unplaced = BTreeSet::new();
    for (from, targets) in &graph {
        let Some(low) = layer_of(from) else {
            if !matches!(from.as_str(), "lib" | "main") {
                unplaced.insert(from.split('/').next().unwrap_or(from).to_owned());
            }
            continue;
        };
        for to in targets {
            if let Some(high) = layer_of(to)
                && high > low
            {
                upward.push(format!("  {from} → {to}"));
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules in no layer of LAYERS (place them, and in docs/architecture.md): {unplaced:?}"
    );
    assert!(
        upward.is_empty(),
        "imports that run up the layers of docs/architecture.md:\n{}",
        upward.join("\n")
    );
}

#[test]
fn a_child_module_importing_its_parent_is_a_cycle() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("a folder");
        fs::write(path, text).expect("a file");
    };
    write("lib.rs", "mod a;\nmod b;\n");
    write(
        "a/mod.rs",
        "mod child;\npub use child::Thing;\npub struct Shared;\n",
    );
    write(
        "a/child.rs",
        "use super::Shared;\npub struct Thing(Shared);\n// use crate::b;\nconst S: &str = \"use crate::b;\";\n",
    );
    write(
        "b.rs",
        "use crate::a::{self, Thing};\n#[cfg(test)]\nmod tests { use crate::*; }\n",
    );
    let graph = graph(dir.path());
    assert_eq!(cycles(&graph), [vec!["a/child", "a/mod"]]);
    assert_eq!(graph["b"], BTreeSet::from(["a/mod".to_owned()]));
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    collect(src, &mut files);
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|f| {
            let name = module_name(src, f);
            (module_path(&name), name)
        })
        .collect();
    let mut graph = Graph::new();
    for file in &files {
        let name = module_name(src, file);
        let here = module_path(&name);
        let text = fs::read_to_string(file).expect("a readable source file");
        let mut targets = BTreeSet::new();
        for path in paths(&code(&text)) {
            if let Some(target) = resolve(&here, &path, &modules)
                && target != name
            {
                targets.insert(target);
            }
        }
        graph.insert(name, targets);
    }
    graph
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("a readable source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `run/lifecycle` for `src/run/lifecycle.rs`.
fn module_name(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("a file under src");
    relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The module path a file defines: `run/mod` and `run` are both `[run]`.
fn module_path(name: &str) -> Vec<String> {
    let mut parts: Vec<String> = name.split('/').map(str::to_owned).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file's code without its `#[cfg(test)]` module, comments and string
/// literals (messages often say "use …").
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let at = |i: usize, s: &str| {
        s.chars()
            .enumerate()
            .all(|(k, c)| chars.get(i + k) == Some(&c))
    };
    while i < chars.len() {
        if at(i, "//") {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if at(i, "/*") {
            i += 2;
            while i < chars.len() && !at(i, "*/") {
                i += 1;
            }
            i += 2;
        } else if at(i, "r#\"") || at(i, "r\"") {
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            let close: String = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            i += 2 + hashes;
            while i < chars.len() && !at(i, &close) {
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if chars[i] == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if chars[i] == '\'' && (at(i + 2, "'") || at(i + 1, "\\")) {
            // A char literal (a lifetime has no closing quote).
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Every path the code names: each leaf of a `use` tree, and each
/// `a::b::c` written in the code.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = find_word(rest, "use ") {
        let tree = &rest[at + 4..];
        let end = tree.find(';').unwrap_or(tree.len());
        expand("", &tree[..end], &mut out);
        rest = &tree[end..];
    }
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts = (chars[i].is_alphabetic() || chars[i] == '_')
            && (i == 0
                || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == ':'));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == ':')
        {
            j += 1;
        }
        let word: String = chars[i..j].iter().collect();
        if word.contains("::") {
            out.push(segments(&word));
        }
        i = j;
    }
    out
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = text[from..].find(word) {
        let at = from + at;
        let before = text[..at].chars().next_back();
        if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// Expands a `use` tree such as `a::{b, c::{d, e as f}}` into its leaves.
fn expand(prefix: &str, tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    match tree.find('{') {
        Some(open) if tree.ends_with('}') => {
            let head = &tree[..open];
            let inner = &tree[open + 1..tree.len() - 1];
            let (mut depth, mut start) = (0, 0);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&format!("{prefix}{head}"), &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            expand(&format!("{prefix}{head}"), &inner[start..], out);
        }
        _ if tree.is_empty() => {}
        _ => {
            let leaf = tree.split(" as ").next().unwrap_or(tree);
            out.push(segments(&format!("{prefix}{leaf}")));
        }
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The file a path leads to, from the module at `here`: the longest
/// prefix of it that is a module of the crate.
fn resolve(
    here: &[String],
    path: &[String],
    modules: &BTreeMap<Vec<String>, String>,
) -> Option<String> {
    let mut target: Vec<String> = match path.first()?.as_str() {
        "crate" => path[1..].to_vec(),
        "self" => here.iter().chain(&path[1..]).cloned().collect(),
        "super" => {
            let mut base = here.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            base.into_iter().chain(rest.iter().cloned()).collect()
        }
        first => {
            let child: Vec<String> = here.iter().cloned().chain([first.to_owned()]).collect();
            if !modules.contains_key(&child) {
                return None;
            }
            here.iter().chain(path).cloned().collect()
        }
    };
    while !target.is_empty() {
        if let Some(file) = modules.get(&target) {
            return Some(file.clone());
        }
        target.pop();
    }
    None
}

/// The groups of modules that reach each other (Tarjan's strongly
/// connected components of more than one module), each sorted.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    group.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.found.push(group);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found.sort();
    walk.found
}
