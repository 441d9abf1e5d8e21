//! `scripts/install-artifact.sh` (what `scripts/build-plugins.sh` installs with) never
//! overwrites the file a running process has loaded: the process keeps reading the old
//! bytes (a Fluent Bit with the old `.so` mapped keeps running), the path gets the new.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

#[test]
fn a_loaded_artifact_is_replaced_not_overwritten() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("lockstep_out_loki.so");
    let src = dir.path().join("new.so");
    std::fs::write(&dst, b"old build").unwrap();
    std::fs::write(&src, b"new build!").unwrap();
    // "Fluent Bit" holds the old file open (as its mapping does).
    let mut loaded = std::fs::File::open(&dst).unwrap();
    let old_inode = loaded.metadata().unwrap().ino();
    let out = Command::new(root.join("scripts/install-artifact.sh"))
        .arg(&src)
        .arg(&dst)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&dst).unwrap(), b"new build!");
    assert_ne!(
        std::fs::metadata(&dst).unwrap().ino(),
        old_inode,
        "a new file, not the old one rewritten"
    );
    let mut seen = Vec::new();
    loaded.seek(SeekFrom::Start(0)).unwrap();
    loaded.read_to_end(&mut seen).unwrap();
    assert_eq!(
        seen, b"old build",
        "the running process's file is untouched"
    );
    // Nothing is left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}
