//! The run directory as a type: where a run keeps its configuration, checkpoints, metrics log and
//! final evaluation. `train`, `resume`, `eval`, `reconstruct` and `compare` all go through it.
//!
//! ```text
//! RUN/config.json  metrics.jsonl  metrics.csv  eval.json  .lock
//!     checkpoints/{latest, step-NNNNNNNN/}
//! ```
//!
//! One process writes a run: [`RunDir::create`] and [`RunDir::open`] take an exclusive OS lock on
//! `RUN/.lock` ([`RunLock`]), which the kernel releases when the process ends however it ends, so
//! kill -9 leaves no stale lock. A second writer is refused ("RUN is in use by process N").
//! Readers (`eval`, `reconstruct`) take no lock: every file they read is replaced by rename, so
//! they see a whole old version or a whole new one. Under the lock, temporary files of dead
//! processes are removed ([`RunDir::open`]).

use std::fs::{File, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::checkpoint::{self, Checkpoint};
use crate::config::RunConfig;
use crate::error::InputError;
use crate::io::write_json;
use crate::records::MetricsLog;

/// The exclusive lock of a run directory; released when dropped or when the process ends.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

fn already_holds_a_run(root: &Path) -> InputError {
    InputError::file(
        root,
        "already holds a run (config.json and a checkpoint); use `vqib resume` to continue it or choose another --out",
    )
}

use crate::io::{pid_alive, stale_parts};

/// A run directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `config.json`: the resolved configuration.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }

    pub fn checkpoints(&self) -> PathBuf {
        checkpoint::checkpoints_dir(&self.root)
    }

    pub fn metrics_jsonl(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    pub fn metrics_csv(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }

    /// `eval.json`: the final test-set evaluation (written when a run completes, and by `eval`).
    pub fn eval_json(&self) -> PathBuf {
        self.root.join("eval.json")
    }

    /// Whether a run was started here (its `config.json` exists).
    pub fn holds_run(&self) -> bool {
        self.config_path().exists()
    }

    /// Whether the run has a checkpoint to resume from: `checkpoints/latest` exists (whatever it
    /// is: a `latest` that is not a readable file naming a checkpoint is reported by
    /// [`Self::load_latest`], never taken for a run without checkpoints).
    pub fn has_checkpoint(&self) -> bool {
        std::fs::symlink_metadata(self.checkpoints().join("latest")).is_ok()
    }

    /// The checkpoint directories (`checkpoints/step-N`) present, whether or not `latest` names
    /// one: a run with any is never started anew.
    pub fn checkpoint_dirs(&self) -> Vec<String> {
        checkpoint::step_dirs(&self.checkpoints())
            .into_iter()
            .filter_map(|(_, p)| Some(p.file_name()?.to_string_lossy().into_owned()))
            .collect()
    }

    /// Whether the run finished: its latest checkpoint is at the end of the configured training
    /// (`epoch` = `--epochs` of `config.json`, no batch of a next epoch begun) and `eval.json` is
    /// the final evaluation of that checkpoint (its `step` is the checkpoint's). A run stopped
    /// part-way, or evaluated by `vqib eval` before its end, or whose last checkpoint has no
    /// final evaluation yet, is not finished. Anything unreadable counts as not finished (the
    /// resume that follows reports it).
    pub fn is_finished(&self) -> bool {
        self.final_state()
            .is_some_and(|(step, at_end)| at_end && self.eval_step() == Some(step))
    }

    /// The latest checkpoint's step and whether it is at the end of the configured training.
    fn final_state(&self) -> Option<(u64, bool)> {
        let dir = checkpoint::latest_dir(&self.root).ok()?;
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).ok()?).ok()?;
        let cfg = RunConfig::load(&self.config_path()).ok()?;
        let step = state.get("step")?.as_u64()?;
        let epoch = state.get("epoch")?.as_u64()?;
        let batch = state.get("batch_in_epoch")?.as_u64()?;
        Some((step, batch == 0 && epoch >= cfg.training.epochs as u64))
    }

    /// The checkpoint step `eval.json` evaluated (`None` if absent, unreadable, or written by a
    /// version that did not record it).
    pub fn eval_step(&self) -> Option<u64> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.eval_json()).ok()?).ok()?;
        v.get("step")?.as_u64()
    }

    /// `.lock`: the file whose OS lock marks the run's one writer (it holds that process's id).
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// Creates the directory for a new run, takes its lock and writes its `config.json`. Refuses a
    /// directory that holds a run with a checkpoint. A directory whose run died before its first
    /// checkpoint (config.json, nothing to resume) is started anew.
    pub fn create(&self, cfg: &RunConfig) -> anyhow::Result<RunLock> {
        std::fs::create_dir_all(&self.root).map_err(|e| {
            InputError::file(&self.root, format!("cannot create the run directory: {e}"))
        })?;
        let lock = self.lock()?;
        if self.has_checkpoint() || !self.checkpoint_dirs().is_empty() {
            return Err(already_holds_a_run(&self.root).into());
        }
        if self.holds_run() {
            eprintln!(
                "note: {} holds a run that stopped before its first checkpoint; starting it anew",
                self.root.display()
            );
            // What such a run may have left beside config.json (metrics are truncated when the
            // new run opens its log).
            for p in [self.eval_json(), self.root.join("code-prior.json")] {
                let _ = std::fs::remove_file(p);
            }
        }
        self.remove_stale_files();
        self.write_config(cfg)?;
        Ok(lock)
    }

    /// Opens an existing run for writing (resume): takes its lock and removes what dead
    /// processes left behind.
    pub fn open(&self) -> Result<RunLock, InputError> {
        match std::fs::metadata(&self.root) {
            Err(_) => return Err(InputError::file(&self.root, "run directory does not exist")),
            Ok(m) if !m.is_dir() => {
                return Err(InputError::file(
                    &self.root,
                    "is not a directory: give the run directory (the one holding config.json and checkpoints/)",
                ));
            }
            Ok(_) => {}
        }
        let lock = self.lock()?;
        self.remove_stale_files();
        Ok(lock)
    }

    /// Takes the run's exclusive lock, or says which process holds it.
    fn lock(&self) -> Result<RunLock, InputError> {
        let path = self.lock_path();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                InputError::file(
                    &self.root,
                    format!("cannot write into the run directory (creating .lock): {e}"),
                )
            })?;
        match file.try_lock() {
            Ok(()) => {
                let pid = std::process::id().to_string();
                let _ = file
                    .set_len(0)
                    .and_then(|()| file.write_all(pid.as_bytes()));
                Ok(RunLock { _file: file })
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = (&file).take(32).read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    pid => format!("process {pid}"),
                };
                Err(InputError::file(
                    &self.root,
                    format!(
                        "is in use by {holder} (another vqib is writing this run); wait for it to end or choose another directory"
                    ),
                ))
            }
            Err(TryLockError::Error(e)) => Err(InputError::file(
                &path,
                format!("cannot lock the run directory: {e}"),
            )),
        }
    }

    /// Removes the temporary files and directories of processes that died while writing
    /// (`.NAME.tmp-PID`), and puts back a checkpoint that was moved aside (`.step-N.old-PID`)
    /// when its successor never arrived. Called under the lock.
    fn remove_stale_files(&self) {
        let ckpts = self.checkpoints();
        for dir in [self.root.as_path(), ckpts.as_path()] {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some((base, kind, pid)) = stale_parts(&name) else {
                    continue;
                };
                if pid_alive(pid) {
                    continue;
                }
                let path = entry.path();
                let home = dir.join(base);
                if kind == "old" && !home.exists() {
                    let _ = std::fs::rename(&path, &home);
                } else if path.is_dir() {
                    let _ = std::fs::remove_dir_all(&path);
                } else {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }

    pub fn write_config(&self, cfg: &RunConfig) -> anyhow::Result<()> {
        write_json(&self.config_path(), cfg)
    }

    /// The newest complete checkpoint (weights, EMA and training state; not the optimizer).
    pub fn load_latest(&self) -> Result<Checkpoint, InputError> {
        checkpoint::load_latest(&self.root)
    }

    /// The metrics log; `keep_up_to` drops records written after the checkpoint a run resumes
    /// from.
    pub fn open_log(&self, keep_up_to: Option<u64>) -> anyhow::Result<MetricsLog> {
        MetricsLog::open(&self.metrics_jsonl(), &self.metrics_csv(), keep_up_to)
    }

    /// Reads the final evaluation.
    pub fn read_eval<T: serde::de::DeserializeOwned>(&self) -> Result<T, InputError> {
        let p = self.eval_json();
        let text = std::fs::read_to_string(&p)
            .map_err(|e| InputError::file(&p, format!("cannot read: {e}")))?;
        serde_json::from_str(&text)
            .map_err(|e| InputError::file(&p, format!("unreadable evaluation: {e}")))
    }

    pub fn write_eval<T: serde::Serialize>(&self, m: &T) -> anyhow::Result<()> {
        write_json(&self.eval_json(), m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_holding_a_run_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let run = RunDir::new(d.path().join("r"));
        assert!(!run.holds_run() && !run.has_checkpoint() && !run.is_finished());
        let lock = run.create(&RunConfig::default()).unwrap();
        assert!(run.holds_run());
        let back = RunConfig::load(&run.config_path()).unwrap();
        assert_eq!(back, RunConfig::default().resolve().unwrap());
        // Locked: a second writer is told who holds it.
        let e = run.open().unwrap_err().to_string();
        let pid = std::process::id().to_string();
        assert!(e.contains("in use by process") && e.contains(&pid), "{e}");
        drop(lock);
        // Without a checkpoint the directory can be started anew; with one it is refused.
        drop(run.create(&RunConfig::default()).unwrap());
        std::fs::create_dir_all(run.checkpoints()).unwrap();
        std::fs::write(run.checkpoints().join("latest"), "step-00000000").unwrap();
        let e = run.create(&RunConfig::default()).unwrap_err().to_string();
        assert!(e.contains("already holds a run"), "{e}");
        let e = run
            .read_eval::<serde_json::Value>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("eval.json"), "{e}");
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let run = RunDir::new(d.path());
        let ck = run.checkpoints();
        // A process id that cannot exist (above the kernel's pid_max).
        let dead = 4_999_999u32;
        let me = std::process::id();
        for name in [
            format!(".step-00000004.tmp-{dead}"),
            format!(".step-00000002.old-{dead}"),
            format!(".step-00000003.old-{dead}"),
            format!(".step-00000005.tmp-{me}"),
        ] {
            std::fs::create_dir_all(ck.join(name).join("x")).unwrap();
        }
        std::fs::create_dir_all(ck.join("step-00000003")).unwrap();
        std::fs::write(ck.join(format!(".latest.tmp-{dead}")), "step").unwrap();
        std::fs::write(d.path().join(format!(".config.json.tmp-{dead}")), "{").unwrap();
        std::fs::write(d.path().join(".keep.me"), "").unwrap();
        drop(run.open().unwrap());
        let mut left: Vec<String> = std::fs::read_dir(&ck)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // The moved-aside step 2 had no successor: it is put back; step 3's is dropped.
        assert_eq!(
            left,
            vec![
                format!(".step-00000005.tmp-{me}"),
                "step-00000002".to_string(),
                "step-00000003".to_string()
            ]
        );
        assert!(!d.path().join(format!(".config.json.tmp-{dead}")).exists());
        assert!(d.path().join(".keep.me").exists());
        assert_eq!(stale_parts(".a.b.tmp-12"), Some(("a.b", "tmp", 12)));
        assert_eq!(stale_parts(".tmp-12"), None);
        assert_eq!(stale_parts("step-00000001"), None);
    }
}
