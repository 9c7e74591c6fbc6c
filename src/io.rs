//! File writes that never leave a half-written file behind: [`write_atomic`] (temporary file in
//! the same directory, flushed, renamed over the target) and [`write_json`] on top of it.
//!
//! A write that fails (a read-only directory, a full disk) is an [`InputError`] naming the file:
//! the user can fix it, and the CLI exits 2 wherever in a run it happens. The temporary file is
//! removed on failure; one left by a killed process carries its process id
//! (`.NAME.tmp-PID`) and is removed by the next process that opens the run directory
//! ([`crate::run::RunDir`]), or, beside a `vqib compress` / `vqib decompress` output, by the next
//! of those that writes into the same directory ([`remove_dead_temporaries`]).

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

/// `.BASE.tmp-PID` or `.BASE.old-PID` -> (BASE, "tmp" or "old", PID).
pub(crate) fn stale_parts(name: &str) -> Option<(&str, &str, u32)> {
    let rest = name.strip_prefix('.')?;
    let (head, pid) = rest.rsplit_once('-')?;
    let pid: u32 = pid.parse().ok()?;
    let (base, kind) = head.rsplit_once('.')?;
    (matches!(kind, "tmp" | "old") && !base.is_empty()).then_some((base, kind, pid))
}

/// Whether a process with this id exists (ours counts as alive).
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Removes from `dir` the temporaries that killed processes left: every entry named
/// `.BASE.tmp-PID` (a file of [`write_atomic`], or a directory being filled) whose process `PID`
/// no longer exists. Nothing else is touched: not a live process's temporary, not another name, and
/// a symbolic link is removed as a link, never followed. Errors (an unreadable directory, an entry
/// that vanished meanwhile) are ignored: the sweep only tidies.
pub(crate) fn remove_dead_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((_, "tmp", pid)) = name.to_str().and_then(stale_parts) else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
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

    #[test]
    fn only_temporaries_of_dead_processes_are_swept() {
        let d = tempfile::tempdir().unwrap();
        // A process id that cannot exist (above the kernel's pid_max).
        let dead = 4_999_999u32;
        let me = std::process::id();
        let gone = [format!(".x.vqz.tmp-{dead}"), format!(".d.tmp-{dead}")];
        let kept = [
            format!(".live.vqz.tmp-{me}"),
            format!(".step-1.old-{dead}"),
            format!("x.tmp-{dead}"),
            format!(".x.tmp-{dead}x"),
            ".tmp-5".to_string(),
            ".hidden".to_string(),
            "x.vqz".to_string(),
        ];
        std::fs::write(d.path().join(&gone[0]), b"half").unwrap();
        std::fs::create_dir_all(d.path().join(&gone[1]).join("sub")).unwrap();
        std::fs::write(d.path().join(&gone[1]).join("000000.png"), b"png").unwrap();
        for k in &kept {
            std::fs::write(d.path().join(k), b"keep").unwrap();
        }
        // A dead process's temporary that is a link to a directory: the link goes, not the target.
        let target = tempfile::tempdir().unwrap();
        std::fs::write(target.path().join("precious"), b"p").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(target.path(), d.path().join(format!(".l.tmp-{dead}"))).unwrap();
        remove_dead_temporaries(d.path());
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = kept.to_vec();
        want.sort();
        assert_eq!(left, want);
        assert!(target.path().join("precious").exists());
        // A directory that does not exist is no error.
        remove_dead_temporaries(&d.path().join("missing"));
    }
}
