//! The library's layers, and a test that keeps imports running one way: a module may
//! use only modules below it. `src/cmd/` (the binary) sits on top of all of them.
//! ARCHITECTURE.md draws the same order; change both together.

/// Top-level modules, highest first. Modules on one line are peers that import neither
/// each other nor anything at or above their own line.
pub const LAYERS: &[&[&str]] = &[
    &["cloud"],
    &["loadtest"],
    &["profile"],
    &["scenarios", "api"],
    &["cache"],
    &["store"],
    &["config", "secrets", "clock", "services"],
    &["ids"],
    &["ledger"],
];

#[cfg(test)]
mod tests {
    use super::LAYERS;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    fn rank(module: &str) -> Option<usize> {
        LAYERS.iter().position(|line| line.contains(&module))
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Every `crate::name` a file mentions, comments and strings included: a mention in
    /// a doc link is a dependency of the reader too.
    fn crate_refs(text: &str) -> BTreeSet<String> {
        text.match_indices("crate::")
            .map(|(i, m)| {
                text[i + m.len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect()
    }

    /// (module, file stem within it) for every library file.
    fn library() -> Vec<(String, String, String)> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        files
            .into_iter()
            .filter_map(|f| {
                let rel = f.strip_prefix(&src).unwrap().to_string_lossy().to_string();
                let mut parts = rel.split('/');
                let first = parts.next()?.trim_end_matches(".rs").to_string();
                if ["main", "lib", "cmd", "layers"].contains(&first.as_str()) {
                    return None;
                }
                let second = parts.next().unwrap_or("mod.rs").trim_end_matches(".rs");
                Some((
                    first,
                    second.to_string(),
                    std::fs::read_to_string(&f).unwrap(),
                ))
            })
            .collect()
    }

    #[test]
    fn every_module_has_a_layer() {
        for (module, _, _) in library() {
            assert!(
                rank(&module).is_some(),
                "src/{module} is missing from LAYERS"
            );
        }
    }

    #[test]
    fn imports_run_downward_only() {
        let mut wrong = Vec::new();
        for (module, file, text) in library() {
            let own = rank(&module).unwrap_or(0);
            for used in crate_refs(&text) {
                if used == module {
                    continue;
                }
                match rank(&used) {
                    Some(r) if r > own => {}
                    _ => wrong.push(format!("src/{module}/{file} uses crate::{used}")),
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "imports against the layers:\n{}",
            wrong.join("\n")
        );
    }

    /// Within a module, sibling files import one another without a circle (a child
    /// using helpers from its own `mod.rs` is the usual parent-child shape, not a circle).
    #[test]
    fn sibling_files_form_no_circle() {
        let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        let library = library();
        let siblings: BTreeSet<(String, String)> = library
            .iter()
            .map(|(m, f, _)| (m.clone(), f.clone()))
            .collect();
        for (module, file, text) in &library {
            if file == "mod" {
                continue;
            }
            for prefix in ["super::".to_string(), format!("crate::{module}::")] {
                for (i, m) in text.match_indices(prefix.as_str()) {
                    let rest = &text[i + m.len()..];
                    let names: Vec<&str> = match rest.strip_prefix('{') {
                        Some(list) => list.split('}').next().unwrap_or("").split(',').collect(),
                        None => vec![rest],
                    };
                    for name in names {
                        let name: String = name
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if name != *file && siblings.contains(&(module.clone(), name.clone())) {
                            edges
                                .entry((module.clone(), file.clone()))
                                .or_default()
                                .insert(name);
                        }
                    }
                }
            }
        }
        // Depth-first search for a back edge.
        fn visit(
            node: &(String, String),
            edges: &BTreeMap<(String, String), BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<(String, String)>,
        ) -> Option<String> {
            if path.contains(&node.1) {
                return Some(format!(
                    "src/{}: {} -> {}",
                    node.0,
                    path.join(" -> "),
                    node.1
                ));
            }
            if !done.insert(node.clone()) {
                return None;
            }
            path.push(node.1.clone());
            for next in edges.get(node).into_iter().flatten() {
                if let Some(c) = visit(&(node.0.clone(), next.clone()), edges, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            None
        }
        for node in edges.keys() {
            let circle = visit(node, &edges, &mut Vec::new(), &mut BTreeSet::new());
            assert!(circle.is_none(), "a circle: {}", circle.unwrap());
        }
    }

    #[test]
    fn the_checks_see_a_violation() {
        assert_eq!(
            crate_refs("use crate::loadtest::acks; // see crate::ledger"),
            ["ledger".to_string(), "loadtest".to_string()].into()
        );
        assert!(rank("scenarios").unwrap() > rank("loadtest").unwrap());
    }
}
