//! ARCHITECTURE.md names files and functions so that a newcomer can find
//! them; these tests keep those names true as the code moves.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every file of the repository (but build output and dependencies), as
/// paths relative to its root.
fn files() -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy();
            if name.starts_with('.') || name == "target" || name == "node_modules" {
                continue;
            }
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let root = root();
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

/// The code spans (`...`) of ARCHITECTURE.md.
fn code_spans() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_file_the_architecture_names_exists() {
    let files = files();
    let missing: Vec<String> = code_spans()
        .into_iter()
        .filter(|span| {
            !span.contains(' ')
                && [".rs", ".md", ".conf", ".yaml", ".lua"]
                    .iter()
                    .any(|ext| span.ends_with(ext))
        })
        .filter(|span| {
            !files
                .iter()
                .any(|file| file == span || file.ends_with(&format!("/{span}")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names files that do not exist: {missing:?}"
    );
}

#[test]
fn every_function_the_architecture_names_exists() {
    let sources: String = files()
        .iter()
        .filter(|file| file.ends_with(".rs"))
        .map(|file| std::fs::read_to_string(root().join(file)).unwrap())
        .collect();
    let missing: Vec<String> = code_spans()
        .into_iter()
        .filter_map(|span| {
            // `Type::function` and `Type::function(...)`.
            let (owner, function) = span.split_once("::")?;
            let function = function.split('(').next()?;
            let is_function = owner.chars().next()?.is_ascii_uppercase()
                && function.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                && !function.is_empty();
            let defined = sources.contains(&format!("fn {function}("))
                || sources.contains(&format!("fn {function}<"));
            (is_function && !defined).then_some(span)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names functions that do not exist: {missing:?}"
    );
}
