//! File writes that never leave a half-written file behind: [`write_atomic`] (temporary file in
//! the same directory, flushed, renamed over the target) and [`write_json`] on top of it.
//!
//! A write that fails (a read-only directory, a full disk) is an [`InputError`] naming the file:
//! the user can fix it, and the CLI exits 2 wherever in a run it happens. The temporary file is
//! removed on failure; one left by a killed process carries its process id
//! (`.NAME.tmp-PID`) and is removed by the next process that opens the run directory
//! ([`crate::run::RunDir`]).

use std::path::Path;

use crate::error::InputError;

/// The temporary name [`write_atomic`] writes `name` under, in the same directory.
pub fn temp_name(name: &str) -> String {
    format!(".{name}.tmp-{}", std::process::id())
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed, then
/// renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), InputError> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(temp_name(name));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        InputError::file(path, format!("cannot write: {e}"))
    })
}

/// Writes `value` as pretty-printed JSON to `path`, atomically.
pub fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    Ok(write_atomic(path, text.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.txt");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn json_is_written_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v.json");
        write_json(&p, &vec![1, 2, 3]).unwrap();
        let v: Vec<i32> = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v, vec![1, 2, 3]);
    }

    #[test]
    fn a_failed_write_names_the_file_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails after the temporary was written.
        let p = d.path().join("taken");
        std::fs::create_dir(p.join("")).unwrap();
        std::fs::write(p.join("x"), b"keep").unwrap();
        let e = write_atomic(&p, b"data").unwrap_err().to_string();
        assert!(e.contains("taken") && e.contains("cannot write"), "{e}");
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("taken")]);
    }
}
