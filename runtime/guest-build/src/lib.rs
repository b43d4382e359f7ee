//! Build-script helper: compile a guest workspace (its own lockfile and
//! `.cargo/config.toml`) for a wasm target with an inner cargo:
//! `wasm32-wasip1` for core modules, `wasm32-wasip2` for components.
//!
//! Used by `runtime/js` (the QuickJS shim) and `tests` (the example
//! functions). The inner build gets its own target directory (sharing the
//! outer one deadlocks on cargo's build lock) and none of the outer build's
//! flags, which are meant for the host.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target of core-module guests (WASI preview 1).
pub const TARGET: &str = "wasm32-wasip1";

/// The target of component guests (WASI 0.2).
pub const COMPONENT_TARGET: &str = "wasm32-wasip2";

/// Build `workspace` in release mode for [`TARGET`] into `target_dir` with
/// the extra `env`, re-running the build script when its sources change.
/// Returns the directory holding the built `.wasm` files.
///
/// Panics with `hint` when the build fails (build scripts report by panicking).
pub fn build(workspace: &Path, target_dir: &Path, env: &[(&str, &str)], hint: &str) -> PathBuf {
    build_for(TARGET, workspace, target_dir, env, hint)
}

/// [`build`] for another `target`.
pub fn build_for(
    target: &str,
    workspace: &Path,
    target_dir: &Path,
    env: &[(&str, &str)],
    hint: &str,
) -> PathBuf {
    for path in ["Cargo.toml", "Cargo.lock", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    watch_sources(workspace);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--release", "--locked", "--target", target])
        .arg("--target-dir")
        .arg(target_dir)
        .envs(env.iter().copied());
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        command.env_remove(var);
    }
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_PROFILE_") || key.starts_with("CARGO_CFG_") {
            command.env_remove(key);
        }
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for {}: {e}", workspace.display()));
    assert!(
        status.success(),
        "building {} failed. {hint}",
        workspace.display()
    );
    target_dir.join(target).join("release")
}

/// Every `src` directory under `dir` (not descending into `target`).
fn watch_sources(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if !path.is_dir() || name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if name == "src" {
            println!("cargo:rerun-if-changed={}", path.display());
        } else {
            watch_sources(&path);
        }
    }
}
