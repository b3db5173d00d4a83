//! The runtime crate's modules form layers: a module may use the modules of
//! lower layers, never its own layer's neighbours or a higher layer (no
//! cycles). Read from the source, so a new `use` that breaks the layering
//! fails here, with the edge that did.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top. A module folder (`bus/`) is one module.
const LAYERS: &[&[&str]] = &[
    &["trace", "escape", "finite"],
    &["handler"],
    &["envelope", "flight"],
    &["context"],
    &["registry"],
    &["event"],
    &["stats"],
    &["any"],
    &["events"],
    &["bus"],
    &["jsonl", "stream"],
    &["history"],
    &["catalog"],
    &["audit", "metrics", "testing"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The source with comments removed (doc links are not imports).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// module → the modules its code names as `crate::<module>`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sbox-events/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a name")
            .trim_end_matches(".rs")
            .to_owned();
        if module == "lib" {
            continue; // the crate root wires the layers together
        }
        let code = code_of(&std::fs::read_to_string(&file).expect("source"));
        let uses = graph.entry(module.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `sbox_events_crate::`...
            }
            let rest = &code[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                uses.insert(name);
            }
        }
        // A `use` group at the crate root: `use crate::{a, b::c}`.
        for (at, _) in code.match_indices("crate::{") {
            let group = &code[at + "crate::{".len()..];
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    uses.insert(name);
                }
            }
        }
    }
    graph
}

#[test]
fn modules_only_use_lower_layers() {
    let graph = imports();
    let mut listing = String::new();
    let mut violations = Vec::new();
    for (module, uses) in &graph {
        let Some(layer) = layer_of(module) else {
            violations.push(format!("`{module}` is in no layer: add it to LAYERS"));
            continue;
        };
        listing.push_str(&format!(
            "{module} -> {}\n",
            uses.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
        for used in uses {
            match layer_of(used) {
                Some(l) if l < layer => {}
                // Items of the crate root (`crate::Event`...) and the glue
                // module are re-exports; name the module that defines them.
                None if used.chars().next().is_some_and(char::is_uppercase) => violations.push(
                    format!("`{module}` names `crate::{used}`: use the defining module's path"),
                ),
                None if used == "__private" => violations.push(format!(
                    "`{module}` uses `crate::__private`, the macros' glue"
                )),
                None => {} // a macro (`crate::link!`) or a std-like item
                Some(_) => violations.push(format!("`{module}` uses `{used}`, not below it")),
            }
        }
    }
    println!("{listing}");
    assert!(
        violations.is_empty(),
        "layering broken:\n{}\n\nimports:\n{listing}",
        violations.join("\n")
    );
}

/// `bus/`'s files → the sibling files they name as `super::<file>`.
fn bus_imports() -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sbox-events/src/bus");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let siblings: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.file_stem()?.to_str().map(str::to_owned))
        .filter(|name| name != "mod")
        .collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let name = file.file_stem().and_then(|s| s.to_str()).expect("a name");
        if name == "mod" {
            continue; // the folder's root wires its files together
        }
        let code = code_of(&std::fs::read_to_string(file).expect("source"));
        let mut uses = BTreeSet::new();
        for (at, _) in code.match_indices("super::") {
            let rest = &code[at + "super::".len()..];
            let items: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap_or(group.len())]
                    .split(',')
                    .collect(),
                None => vec![rest],
            };
            for item in items {
                let ident: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if siblings.contains(&ident) && ident != name {
                    uses.insert(ident);
                }
            }
        }
        graph.insert(name.to_owned(), uses);
    }
    graph
}

#[test]
fn the_bus_folder_has_no_cycle() {
    let graph = bus_imports();
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<String> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node);
            return Some(cycle.join(" -> "));
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut BTreeSet::new()) {
            panic!("bus/ files import each other in a circle: {cycle}\ngraph: {graph:#?}");
        }
    }
}

/// Source files stay readable: none over 600 lines.
#[test]
fn no_source_file_is_over_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in [
        "sbox-events",
        "sbox-events-derive",
        "examples",
        "tests",
        "sbox-events-nats",
    ] {
        let dir = root.join(dir);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
    }
    let long: Vec<String> = files
        .iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "target"))
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).ok()?.lines().count();
            (lines > 600).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these files: {long:?}");
}
