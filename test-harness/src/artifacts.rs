//! Builds the plugin artifacts tests load (workspace packages' `cdylib`s, the filter `.wasm`)
//! with the same cargo that runs the tests, into a separate target directory (so the
//! nested build never waits on the outer build's lock).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Why an artifact could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// cargo could not be started.
    #[error("cannot run `{cargo} build -p {package}`: {source}")]
    Spawn {
        /// The cargo binary.
        cargo: String,
        /// The package.
        package: String,
        /// Why.
        source: std::io::Error,
    },
    /// cargo failed.
    #[error("`cargo build -p {package}` failed:\n{stderr}")]
    Build {
        /// The package.
        package: String,
        /// cargo's diagnostics.
        stderr: String,
    },
    /// cargo succeeded but named no shared object for the package.
    #[error("`cargo build -p {package}` produced no .so artifact")]
    NoArtifact {
        /// The package.
        package: String,
    },
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `<target>/<profile>` of the running test binary, from its own path
/// (`<target>/<profile>/deps/<test>`).
fn running_target_and_profile() -> (PathBuf, String) {
    let exe = std::env::current_exe().ok();
    let profile_dir = exe
        .as_deref()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    match profile_dir {
        Some(dir) if dir.parent().is_some() => {
            let profile = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "debug".into());
            (dir.parent().map(Path::to_path_buf).unwrap_or(dir), profile)
        }
        _ => (workspace_root().join("target"), "debug".into()),
    }
}

/// Builds `package` (a workspace member with a `cdylib` target) and returns
/// the path of its shared object. Built once per process and package.
pub fn build_cdylib(package: &str) -> Result<PathBuf, ArtifactError> {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.as_ref().and_then(|m| m.get(package)) {
        return Ok(path.clone());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let (target, profile) = running_target_and_profile();
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .env(
            "CARGO_TARGET_DIR",
            target.join("lockstep-harness-artifacts"),
        )
        .args([
            "build",
            "-p",
            package,
            "--message-format=json-render-diagnostics",
        ]);
    if profile == "release" {
        cmd.arg("--release");
    }
    let out = cmd.output().map_err(|source| ArtifactError::Spawn {
        cargo: cargo.clone(),
        package: package.to_string(),
        source,
    })?;
    if !out.status.success() {
        return Err(ArtifactError::Build {
            package: package.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let mut found = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        // Only `package` is built with `-p`; its dependencies are rlibs, so the one
        // cdylib artifact is the package's (whatever its `[lib] name`).
        let is_cdylib = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if msg["reason"] != "compiler-artifact" || !is_cdylib {
            continue;
        }
        let files = msg["filenames"].as_array().cloned().unwrap_or_default();
        for f in files {
            if let Some(f) = f.as_str().filter(|f| f.ends_with(".so")) {
                found = Some(PathBuf::from(f));
            }
        }
    }
    let path = found.ok_or_else(|| ArtifactError::NoArtifact {
        package: package.to_string(),
    })?;
    built
        .get_or_insert_with(HashMap::new)
        .insert(package.to_string(), path.clone());
    Ok(path)
}

/// Builds `plugins/filter-lockstep` for `wasm32-unknown-unknown` with the `wasm` profile
/// (what `scripts/build-plugins.sh` ships) and returns the `.wasm` path.
pub fn build_filter_wasm(features: &[&str]) -> Result<PathBuf, String> {
    let root = workspace_root();
    let target_dir = root.join("target").join("harness-wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(&root)
        .env("CARGO_TARGET_DIR", &target_dir)
        .args([
            "build",
            "-q",
            "-p",
            "filter-lockstep",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            "wasm",
        ]);
    // `["json-only"]`: no default features (the JSON-only build shipped as
    // dist/lockstep_filter-json.wasm).
    if features == ["json-only"] {
        cmd.arg("--no-default-features");
    } else if !features.is_empty() {
        cmd.args(["--no-default-features", "--features", &features.join(",")]);
    }
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the filter failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let built = target_dir.join("wasm32-unknown-unknown/wasm/lockstep_filter.wasm");
    let name = if features.is_empty() {
        "lockstep_filter.wasm".to_string()
    } else {
        format!("lockstep_filter-{}.wasm", features.join("-"))
    };
    let dest = target_dir.join(name);
    std::fs::copy(&built, &dest).map_err(|e| format!("{}: {e}", built.display()))?;
    Ok(dest)
}
