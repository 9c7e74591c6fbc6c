//! The run directory as a type: where a run keeps its configuration, checkpoints, metrics log and
//! final evaluation. `train`, `resume`, `eval`, `reconstruct` and `compare` all go through it.
//!
//! ```text
//! RUN/config.json  metrics.jsonl  metrics.csv  eval.json  checkpoints/{latest, step-NNNNNNNN/}
//! ```

use std::path::{Path, PathBuf};

use crate::checkpoint::{self, Checkpoint};
use crate::config::RunConfig;
use crate::error::InputError;
use crate::io::write_json;
use crate::records::MetricsLog;

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

    /// Whether the run has a checkpoint to resume from.
    pub fn has_checkpoint(&self) -> bool {
        self.checkpoints().join("latest").is_file()
    }

    /// Whether the run finished (its final evaluation was written).
    pub fn is_finished(&self) -> bool {
        self.eval_json().is_file()
    }

    /// Creates the directory for a new run and writes its `config.json`; refuses a directory that
    /// already holds a run.
    pub fn create(&self, cfg: &RunConfig) -> anyhow::Result<()> {
        if self.holds_run() {
            return Err(InputError::file(
                &self.root,
                "already holds a run (config.json exists); use `vqib resume` to continue it or choose another --out",
            )
            .into());
        }
        std::fs::create_dir_all(&self.root).map_err(|e| {
            InputError::file(&self.root, format!("cannot create run directory: {e}"))
        })?;
        self.write_config(cfg)
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
        run.create(&RunConfig::default()).unwrap();
        assert!(run.holds_run());
        let back = RunConfig::load(&run.config_path()).unwrap();
        assert_eq!(back, RunConfig::default().resolve().unwrap());
        let e = run.create(&RunConfig::default()).unwrap_err().to_string();
        assert!(e.contains("already holds a run"), "{e}");
        let e = run
            .read_eval::<serde_json::Value>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("eval.json"), "{e}");
    }
}
