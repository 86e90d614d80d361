//! The code's layering: no import cycle between the modules of `app`, `trainer` or
//! `server`, neither between top-level modules (a folder such as `app/src/runs/` counts as
//! one) nor between files. A cycle means two parts that cannot be understood or changed
//! one without the other; this test names the modules of any cycle it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose sources are checked, relative to the repository root.
const CRATES: [&str; 3] = ["app", "trainer", "server"];

/// Each `.rs` file under `src`, as its module path (`runs::queue`; `""` for the root).
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(src).unwrap().with_extension("");
                let mut parts: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    parts.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    parts.pop();
                }
                found.insert(parts.join("::"), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    found
}

/// The paths that the file of module `module` names after `crate::` or `super::`, each as
/// its list of segments from the crate root; comments are skipped. (`super::` inside an
/// inline module of the file resolves one level too high, to an ancestor, which
/// [`graph`] ignores.)
fn crate_paths(module: &str, text: &str) -> Vec<Vec<String>> {
    let mut parent: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    parent.pop();
    let mut paths = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (prefix, base) in [("crate::", &Vec::new()), ("super::", &parent)] {
            let mut rest = code;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                rest = &rest[at + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                let named = rest[..end].split("::").filter(|s| !s.is_empty());
                let segments: Vec<String> = base
                    .iter()
                    .cloned()
                    .chain(named.map(str::to_string))
                    .collect();
                if !segments.is_empty() {
                    paths.push(segments);
                }
            }
        }
    }
    paths
}

/// The module graph of one crate: which module names which, at top-level granularity
/// (`top`) or file by file.
fn graph(modules: &BTreeMap<String, String>, top: bool) -> BTreeMap<String, BTreeSet<String>> {
    let key = |module: &str| -> String {
        if top {
            module.split("::").next().unwrap_or("").to_string()
        } else {
            module.to_string()
        }
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in modules {
        let from = key(module);
        edges.entry(from.clone()).or_default();
        for path in crate_paths(module, text) {
            // The longest prefix of the path that is a module of the crate.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|candidate| modules.contains_key(candidate));
            let Some(target) = target.map(|t| key(&t)) else {
                continue;
            };
            let nested = |a: &str, b: &str| a.starts_with(&format!("{b}::"));
            if target != from
                && !nested(&from, &target)
                && !nested(&target, &from)
                && !target.is_empty()
            {
                edges.get_mut(&from).unwrap().insert(target);
            }
        }
    }
    edges
}

/// The groups of two or more modules that name each other in a cycle (Tarjan's strongly
/// connected components).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Search<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(search: &mut Search<'a>, node: &'a str) {
        let n = search.index.len();
        search.index.insert(node, n);
        search.low.insert(node, n);
        search.stack.push(node);
        for next in search.edges.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !search.index.contains_key(next) {
                visit(search, next);
                let low = search.low[node].min(search.low[next]);
                search.low.insert(node, low);
            } else if search.stack.contains(&next) {
                let low = search.low[node].min(search.index[next]);
                search.low.insert(node, low);
            }
        }
        if search.low[node] == search.index[node] {
            let mut group = Vec::new();
            while let Some(member) = search.stack.pop() {
                group.push(member.to_string());
                if member == node {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                search.found.push(group);
            }
        }
    }
    let mut search = Search {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in edges.keys() {
        if !search.index.contains_key(node.as_str()) {
            visit(&mut search, node);
        }
    }
    search.found
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn no_module_names_another_that_names_it_back() {
    for name in CRATES {
        let modules = modules(&repo_root().join(name).join("src"));
        assert!(modules.len() > 5, "{name}: found only {modules:?}");
        for top in [true, false] {
            let found = cycles(&graph(&modules, top));
            let level = if top { "top-level modules" } else { "files" };
            assert!(
                found.is_empty(),
                "{name}: import cycles between {level}: {found:?}"
            );
        }
    }
}

#[test]
fn a_cycle_is_found_and_named() {
    let modules: BTreeMap<String, String> = [
        ("".to_string(), "mod a; mod b; mod c;".to_string()),
        ("a".to_string(), "use crate::b::Thing;".to_string()),
        ("b".to_string(), "fn f() { crate::c::g(); }".to_string()),
        (
            "c".to_string(),
            "// crate::a is only in a comment\nuse crate::a::x;".to_string(),
        ),
        (
            "a::inner".to_string(),
            "use crate::a::Other; use crate::b;".to_string(),
        ),
        ("d".to_string(), "mod e; mod f;".to_string()),
        ("d::e".to_string(), "use super::f::Thing;".to_string()),
        ("d::f".to_string(), "fn g() { super::e::h() }".to_string()),
    ]
    .into();
    assert_eq!(cycles(&graph(&modules, true)), [["a", "b", "c"]]);
    assert_eq!(
        cycles(&graph(&modules, false)),
        [vec!["a", "b", "c"], vec!["d::e", "d::f"]]
    );
    let acyclic: BTreeMap<String, String> = [
        ("a".to_string(), "use crate::b::Thing;".to_string()),
        ("b".to_string(), "// use crate::a;".to_string()),
    ]
    .into();
    assert!(cycles(&graph(&acyclic, true)).is_empty());
}
