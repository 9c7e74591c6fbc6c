//! Which configuration governs a resumed run: the checkpoint's, with `--epochs` and `--data-dir`
//! the only settings a resume may change, and a `config.json` that disagrees reported.

use crate::checkpoint::Checkpoint;
use crate::config::RunConfig;
use crate::error::InputError;
use crate::run::RunDir;

use super::ResumeOverrides;

/// The configuration of a resumed run: the checkpoint's, which governs. Of the two settings a
/// resume may change, `--epochs` and `--data-dir` come from the flags, else from `config.json`
/// (an earlier `resume --epochs` wrote them there), else from the checkpoint. Any other setting in
/// which `config.json` disagrees with the checkpoint is an error naming the file and the
/// settings, never silently overwritten; a missing or unreadable `config.json` is rewritten.
pub(super) fn governing_config(
    run: &RunDir,
    ck: &Checkpoint,
    overrides: ResumeOverrides,
) -> anyhow::Result<RunConfig> {
    let path = run.config_path();
    let on_disk = RunConfig::load(&path);
    let mut cfg = ck.config.clone();
    if let Ok(disk) = &on_disk {
        cfg.training.epochs = disk.training.epochs;
        cfg.data.data_dir = disk.data.data_dir.clone();
        let diff = config_differences(disk, &cfg, "config.json", "the checkpoint");
        if !diff.is_empty() {
            return Err(InputError::file(
                &path,
                format!(
                    "disagrees with checkpoint {}, whose configuration governs the run: {}; restore those values (only --epochs and --data-dir may change on resume) or start a new run",
                    ck.dir.display(),
                    diff.join(", ")
                ),
            )
            .into());
        }
    }
    if let Some(e) = overrides.epochs {
        cfg.training.epochs = e;
    }
    // Epochs the checkpoint has begun: fewer would describe a run the checkpoint is past (and
    // compare and sweep decide reuse from config.json).
    let begun = ck.state.epoch + usize::from(ck.state.batch_in_epoch > 0);
    if cfg.training.epochs < begun {
        let what = match overrides.epochs {
            Some(e) => format!("--epochs {e}"),
            None => format!(
                "{} says epochs {}, which",
                path.display(),
                cfg.training.epochs
            ),
        };
        return Err(InputError::config(format!(
            "{what} is below the {begun} epoch(s) checkpoint {} has begun (step {}); give --epochs {begun} or more",
            ck.dir.display(),
            ck.state.step
        ))
        .into());
    }
    if let Some(d) = overrides.data_dir {
        cfg.data.data_dir = Some(d);
    }
    cfg.validate()?;
    match &on_disk {
        Err(e) => {
            eprintln!(
                "warning: {e}; rewriting it from checkpoint {}",
                ck.dir.display()
            );
            run.write_config(&cfg)?;
        }
        Ok(disk) if *disk != cfg => run.write_config(&cfg)?,
        Ok(_) => {}
    }
    eprintln!(
        "resuming {} from {} (step {}) with its configuration, {} epochs",
        run.path().display(),
        ck.dir.display(),
        ck.state.step,
        cfg.training.epochs
    );
    Ok(cfg)
}

/// The settings in which two configurations differ, as `section.key: A in NAME_A, B in NAME_B`.
pub(crate) fn config_differences(
    disk: &RunConfig,
    ck: &RunConfig,
    name_a: &str,
    name_b: &str,
) -> Vec<String> {
    let (a, b) = (serde_json::to_value(disk), serde_json::to_value(ck));
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) else {
        return vec!["(unreadable)".into()];
    };
    let mut out = Vec::new();
    for (section, av) in &a {
        let (Some(av), Some(bv)) = (av.as_object(), b.get(section).and_then(|v| v.as_object()))
        else {
            continue;
        };
        for (key, x) in av {
            let y = bv.get(key).unwrap_or(&serde_json::Value::Null);
            if x != y {
                out.push(format!("{section}.{key}: {x} in {name_a}, {y} in {name_b}"));
            }
        }
    }
    out
}
