//! The configuration of a run: five sections (data, model, quantizer, rate, training), each a
//! type that is at once the command line's flags (clap derives them from the fields, their docs
//! and defaults) and a part of `config.json` (serde). Every default is the clap default of its
//! field ([`defaults`] reads them from there); the two dependent defaults (the conv width per data
//! set, the EMA decay per quantizer) are resolved by [`RunConfig::resolve`], which also validates
//! every value, so a [`RunConfig`] that came through [`RunConfig::resolve`] or
//! [`RunConfig::from_json`] is a checked one.
//!
//! `config.json` is written nested by section; the flat layout written by vqib before the sections
//! existed is still read ([`RunConfig::from_json`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{DataSpec, Dataset, DatasetKind};
use crate::device::DeviceKind;
use crate::error::InputError;
pub use crate::quantizer::config::QuantizerConfig;
use crate::quantizer::init::CodebookInit;
use crate::quantizer::rate::{PriorKind, RateKind};

mod flat;
mod memory;

/// The clap defaults of a section (what the command line gives when no flag is passed).
pub fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let cmd = T::augment_args(clap::Command::new("vqib").no_binary_name(true));
    let m = cmd
        .try_get_matches_from(std::iter::empty::<String>())
        .expect("every flag of a config section has a default");
    T::from_arg_matches(&m).expect("defaults convert")
}

macro_rules! default_from_clap {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                defaults()
            }
        }
    )*};
}

/// Which images, from where.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct DataConfig {
    /// Data set.
    #[arg(long, value_enum, default_value = "shapes")]
    pub dataset: DatasetKind,
    /// Directory holding the data set's files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Folder data sets: resize every image to SIZE x SIZE.
    #[arg(long, value_name = "SIZE")]
    pub image_size: Option<usize>,
    /// Shapes data set: number of generated training images.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub shapes_train: usize,
    /// Shapes data set: number of generated test images.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub shapes_test: usize,
    /// Use only the first N training images (0 = all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub train_limit: usize,
    /// Use only the first N test images (0 = all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub test_limit: usize,
    /// `[channels, height, width]` of the images, filled in when the data is loaded.
    #[arg(skip)]
    pub image_shape: Option<[usize; 3]>,
}

/// Encoder and decoder (van den Oord et al. 2017), and the decoder's likelihood.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct ModelConfig {
    /// Channels of the conv layers [default: the data set's: 64 for shapes, 128 for
    /// (fashion-)mnist and folders, 256 for cifar10].
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Standard deviation of the Gaussian decoder in the reported distortion term.
    #[arg(long, default_value_t = 1.0)]
    pub sigma: f64,
}

/// An explicit rate term and the prior r(z) it is measured against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct RateConfig {
    /// Explicit rate term: B * H(p(Z|I), r) (vdib) or B * KL(p(Z|I) || r) (vib).
    #[arg(id = "rate", long = "rate", value_enum, default_value = "none")]
    pub kind: RateKind,
    /// B, the weight of the rate term.
    #[arg(id = "rate_weight", long = "rate-weight", default_value_t = 1.0)]
    pub weight: f64,
    /// The prior r(z): uniform, or a learned categorical (softmax of trainable logits).
    #[arg(long, value_enum, default_value = "uniform")]
    pub prior: PriorKind,
}

/// The optimizer, the schedule, and where tensors live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct TrainingConfig {
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// Images a batch [default: the data set's: 32 for shapes, 128 otherwise].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Adam learning rate (betas 0.9/0.999, eps [`ADAM_EPSILON`]) [default: the data set's: 1e-3
    /// for shapes, 2e-4 otherwise].
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where tensors live.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Log a training record every N steps.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub log_every: u64,
    /// Also checkpoint every N steps (0 = at each epoch's end only).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub checkpoint_every: u64,
    /// Also evaluate on the test split every N steps (0 = at each epoch's end only).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub eval_every: u64,
    /// Code maps drawn per test image for the seed's distortion, an expectation over the
    /// posterior, in the final evaluation (0 = not estimated; otherwise at least 2).
    #[arg(long, default_value_t = 4, value_name = "S")]
    pub eval_samples: usize,
}

default_from_clap!(
    DataConfig,
    ModelConfig,
    QuantizerConfig,
    RateConfig,
    TrainingConfig,
    RunConfig
);

impl DataConfig {
    /// Loads the data set this section names (applying `train_limit` / `test_limit`), and checks
    /// it against the image shape a run was trained on.
    pub fn load(&self, seed: u64) -> Result<Dataset, InputError> {
        let spec = DataSpec {
            kind: self.dataset,
            dir: self.data_dir.clone(),
            image_size: self.image_size,
            shapes_train: self.shapes_train,
            shapes_test: self.shapes_test,
            seed,
        };
        let mut ds = crate::data::load(&spec)?;
        if self.train_limit > 0 {
            ds.train = ds.train.take(self.train_limit);
        }
        if self.test_limit > 0 {
            ds.test = ds.test.take(self.test_limit);
        }
        if let Some(shape) = self.image_shape
            && shape != ds.image_shape()
        {
            let msg = format!(
                "the data has images of shape {:?} but the run was trained on {shape:?}",
                ds.image_shape()
            );
            return Err(match &self.data_dir {
                Some(dir) => InputError::file(dir, msg),
                None => InputError::config(msg),
            });
        }
        Ok(ds)
    }
}

/// Adam's epsilon (PyTorch's default).
pub const ADAM_EPSILON: f64 = 1e-8;

impl TrainingConfig {
    /// The optimizer every run uses: Adam with PyTorch's defaults.
    pub fn optimizer(&self) -> burn::optim::AdamConfig {
        burn::optim::AdamConfig::new().with_epsilon(ADAM_EPSILON as f32)
    }
}

/// The defaults that depend on the data set: each learns within the default budget (2 epochs)
/// with every quantizer, and shows the seed's contrast (plain VQ using few codes, soft EM many).
/// Resolved into `config.json` ([`RunConfig::resolve`]); a flag given overrides each.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DatasetDefaults {
    /// `--hidden`.
    pub hidden: usize,
    /// `--batch-size`.
    pub batch_size: usize,
    /// `--lr`.
    pub lr: f64,
    /// `--init`.
    pub init: CodebookInit,
}

impl DatasetDefaults {
    /// The defaults of a data set. `shapes` (4096 generated images) gets more steps (batch 32)
    /// at a higher rate on a smaller model, and a k-means codebook: at MNIST's settings its 64
    /// steps left vq on 2 of 512 codes (MSE 0.035) and soft EM at I(I;Z) = 0.0001; with these,
    /// vq uses 19 codes at MSE 0.009 and soft EM 335 (seed 1). MNIST's are the budget of the
    /// published comparisons (in the README); CIFAR-10's colour images get twice the channels.
    pub fn of(kind: DatasetKind) -> Self {
        match kind {
            DatasetKind::Shapes => Self {
                hidden: 64,
                batch_size: 32,
                lr: 1e-3,
                init: CodebookInit::Kmeans,
            },
            DatasetKind::Cifar10 => Self {
                hidden: 256,
                batch_size: 128,
                lr: 2e-4,
                init: CodebookInit::Uniform,
            },
            _ => Self {
                hidden: 128,
                batch_size: 128,
                lr: 2e-4,
                init: CodebookInit::Uniform,
            },
        }
    }
}

/// Everything that defines a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct RunConfig {
    #[command(flatten)]
    pub data: DataConfig,
    #[command(flatten)]
    pub model: ModelConfig,
    #[command(flatten)]
    pub quantizer: QuantizerConfig,
    #[command(flatten)]
    pub rate: RateConfig,
    #[command(flatten)]
    pub training: TrainingConfig,
}

impl RunConfig {
    /// Conv channels: `--hidden`, else the data set's ([`DatasetDefaults`]).
    pub fn hidden(&self) -> usize {
        self.model
            .hidden
            .unwrap_or(DatasetDefaults::of(self.data.dataset).hidden)
    }

    /// Images a batch: `--batch-size`, else the data set's ([`DatasetDefaults`]).
    pub fn batch_size(&self) -> usize {
        self.training
            .batch_size
            .unwrap_or(DatasetDefaults::of(self.data.dataset).batch_size)
    }

    /// The codebook's initialisation: `--init`, else k-means for sq (its posterior needs
    /// codewords at the data's scale: from U(-1/K, 1/K) every codeword is as likely and stays
    /// so), else the data set's ([`DatasetDefaults`]).
    pub fn init(&self) -> CodebookInit {
        self.quantizer.init.unwrap_or(
            if self.quantizer.kind == crate::quantizer::QuantizerKind::Sq {
                CodebookInit::Kmeans
            } else {
                DatasetDefaults::of(self.data.dataset).init
            },
        )
    }

    /// Adam's learning rate: `--lr`, else the data set's ([`DatasetDefaults`]).
    pub fn lr(&self) -> f64 {
        self.training
            .lr
            .unwrap_or(DatasetDefaults::of(self.data.dataset).lr)
    }

    /// EMA decay: `--ema-decay`, else the quantizer's own default.
    pub fn ema_decay(&self) -> f64 {
        self.quantizer.decay()
    }

    /// Fills in the dependent defaults (so that `config.json` states them) and validates.
    pub fn resolve(mut self) -> Result<Self, InputError> {
        self.model.hidden = Some(self.hidden());
        self.training.batch_size = Some(self.batch_size());
        self.training.lr = Some(self.lr());
        self.quantizer.init = Some(self.init());
        self.quantizer.ema_decay = Some(self.ema_decay());
        self.quantizer.validate()?;
        self.quantizer.resolve();
        self.validate()?;
        Ok(self)
    }

    /// Checks every value a model or a run cannot work with.
    pub fn validate(&self) -> Result<(), InputError> {
        let (q, r, t) = (&self.quantizer, &self.rate, &self.training);
        let positive =
            |name: &str, v: f64| check(v > 0.0 && v.is_finite(), name, "positive and finite", v);
        let non_negative = |name: &str, v: f64| {
            check(
                v >= 0.0 && v.is_finite(),
                name,
                "non-negative and finite",
                v,
            )
        };
        let at_least_one = |name: &str, v: usize| check(v >= 1, name, "at least 1", v);
        q.validate()?;
        if (r.kind != RateKind::None || r.prior != PriorKind::Uniform)
            && (q.stages() != 1 || !q.has_codebook())
        {
            return Err(InputError::config(format!(
                "--rate and --prior learned apply to the quantizers with one codebook (vq, vq-ema, soft-em, sq), not to --quantizer {}",
                q.kind
            )));
        }
        at_least_one("--epochs", t.epochs)?;
        check(
            t.epochs <= MAX_EPOCHS,
            "--epochs",
            "at most 1000000",
            t.epochs,
        )?;
        at_least_one("--hidden", self.hidden())?;
        at_least_one("--batch-size", self.batch_size())?;
        at_least_one("--samples", q.samples)?;
        at_least_one("--log-every", t.log_every as usize)?;
        check(
            t.eval_samples != 1,
            "--eval-samples",
            "0 (off) or at least 2 (a standard error needs two draws)",
            t.eval_samples,
        )?;
        let lr = self.lr();
        positive("--lr", lr)?;
        check(lr <= f32::MAX as f64, "--lr", "representable as f32", lr)?;
        non_negative("--beta", q.beta)?;
        let decay = self.ema_decay();
        check(
            (0.0..1.0).contains(&decay),
            "--ema-decay",
            "in [0, 1)",
            decay,
        )?;
        positive("--ema-epsilon", q.ema_epsilon)?;
        positive("--temperature", q.temperature)?;
        non_negative("--rate-weight", r.weight)?;
        positive("--sigma", self.model.sigma)?;
        let d = &self.data;
        if let Some(size) = d.image_size {
            check(
                size >= 4 && size % 4 == 0,
                "--image-size",
                "a positive multiple of 4 (the model downsamples by 4)",
                size,
            )?;
        }
        if d.dataset == DatasetKind::Shapes && (d.shapes_train == 0 || d.shapes_test == 0) {
            return Err(InputError::config(
                "shapes data set sizes must be at least 1",
            ));
        }
        Ok(())
    }

    /// Parses and validates a configuration: the sectioned layout, or the flat one of earlier
    /// vqib versions. `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &Path) -> Result<Self, InputError> {
        let bad = |m: String| InputError::file(origin, m);
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| bad(format!("not a valid vqib run config: {e}")))?;
        let value = if flat::is_flat(&value) {
            flat::nest(value)
        } else {
            value
        };
        let cfg: RunConfig = serde_json::from_value(value)
            .map_err(|e| bad(format!("not a valid vqib run config: {e}")))?;
        cfg.resolve().map_err(|e| bad(e.to_string()))
    }

    /// Reads and validates a `config.json`.
    pub fn load(path: &Path) -> Result<Self, InputError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| InputError::file(path, format!("cannot read run config: {e}")))?;
        Self::from_json(&text, path)
    }
}

/// The most epochs a run may have: with the step counter a u64 and at most 2^32 batches an
/// epoch, epochs x steps per epoch cannot overflow.
pub const MAX_EPOCHS: usize = 1_000_000;

fn check<T: std::fmt::Display>(ok: bool, name: &str, want: &str, got: T) -> Result<(), InputError> {
    if ok {
        Ok(())
    } else {
        Err(InputError::config(format!(
            "{name} must be {want} (got {got})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantizer::QuantizerKind;

    #[test]
    fn defaults_are_the_command_lines() {
        let c = RunConfig::default();
        assert_eq!(c.quantizer.codebook_size(), 512);
        assert_eq!(c.training.lr, None);
        assert_eq!(c.data.dataset, DatasetKind::Shapes);
        assert_eq!(c.model.hidden, None);
        assert_eq!((c.hidden(), c.batch_size(), c.lr()), (64, 32, 1e-3));
        assert_eq!(c.init(), CodebookInit::Kmeans);
    }

    #[test]
    fn dependent_defaults_resolve_in_one_place() {
        let mut c = RunConfig::default();
        c.quantizer.kind = QuantizerKind::SoftEm;
        c.data.dataset = DatasetKind::Cifar10;
        let r = c.clone().resolve().unwrap();
        assert_eq!(r.quantizer.ema_decay, Some(0.999));
        assert_eq!(r.model.hidden, Some(256));
        assert_eq!(
            (r.training.batch_size, r.training.lr),
            (Some(128), Some(2e-4))
        );
        // Written into config.json: a run keeps its defaults when the defaults change.
        let mut m = RunConfig::default();
        m.data.dataset = DatasetKind::Mnist;
        let r = m.clone().resolve().unwrap();
        assert_eq!(
            (r.model.hidden, r.training.batch_size),
            (Some(128), Some(128))
        );
        m.training.batch_size = Some(7);
        assert_eq!(m.resolve().unwrap().batch_size(), 7);
        c.quantizer.ema_decay = Some(0.5);
        c.model.hidden = Some(8);
        let r = c.resolve().unwrap();
        assert_eq!((r.ema_decay(), r.hidden()), (0.5, 8));
    }

    #[test]
    fn invalid_values_are_refused_by_name() {
        let mut c = RunConfig::default();
        c.training.lr = Some(-1.0);
        let e = c.resolve().unwrap_err().to_string();
        assert!(e.contains("--lr") && e.contains("-1"), "{e}");
        let mut c = RunConfig::default();
        c.quantizer.ema_decay = Some(1.0);
        assert!(c.resolve().unwrap_err().to_string().contains("--ema-decay"));
    }

    /// The flat `config.json` of earlier versions reads into the same configuration.
    #[test]
    fn flat_layout_still_reads() {
        let flat = r#"{"dataset":"shapes","data_dir":null,"image_size":null,"shapes_train":64,
            "shapes_test":16,"train_limit":0,"test_limit":0,"image_shape":[1,28,28],
            "quantizer":"vq-ema","codebook_size":8,"code_dim":2,"hidden":4,"beta":0.25,
            "ema_decay":0.9,"ema_epsilon":1e-5,"init":"kmeans","dead_code_steps":3,
            "temperature":0.5,"samples":3,"rate":"vib","rate_weight":0.1,"prior":"learned",
            "sigma":1.0,"eval_every":0,"epochs":2,"batch_size":16,"lr":0.001,"seed":7,
            "device":"cpu","log_every":1,"checkpoint_every":0}"#;
        let c = RunConfig::from_json(flat, Path::new("config.json")).unwrap();
        assert_eq!(c.quantizer.kind, QuantizerKind::VqEma);
        assert_eq!(c.quantizer.ema_decay, Some(0.9));
        assert_eq!(c.quantizer.init, Some(CodebookInit::Kmeans));
        assert_eq!((c.rate.kind, c.rate.weight), (RateKind::Vib, 0.1));
        assert_eq!(c.training.seed, 7);
        assert_eq!(c.data.image_shape, Some([1, 28, 28]));
        assert_eq!(c.hidden(), 4);
        // And the sectioned layout round-trips.
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(RunConfig::from_json(&text, Path::new("x")).unwrap(), c);
    }

    #[test]
    fn zero_epochs_and_bad_image_sizes_are_refused() {
        let mut c = RunConfig::default();
        c.training.epochs = 0;
        assert!(c.resolve().unwrap_err().to_string().contains("--epochs"));
        for size in [0, 6] {
            let mut c = RunConfig::default();
            c.data.image_size = Some(size);
            let e = c.resolve().unwrap_err().to_string();
            assert!(
                e.contains("--image-size") && e.contains("multiple of 4"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_bad_config_names_its_file() {
        let e = RunConfig::from_json("{", Path::new("/r/config.json")).unwrap_err();
        assert!(e.to_string().contains("/r/config.json"), "{e}");
    }
}
