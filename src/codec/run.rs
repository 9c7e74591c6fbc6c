//! `vqib compress` and `vqib decompress` on a run's newest checkpoint, and the coded rate beside
//! the entropy bounds of an evaluation.
//!
//! Compress: images -> encoder -> code map (nearest codeword, [`VqVae::codes`]) -> ANS against the
//! run's coding prior ([`super::prior`]) -> a `.vqz` container ([`super::format`]), written
//! atomically. Decompress: the container, checked against the model (hash), the prior (checksum)
//! and the shapes, its image count bounded by memory and checked against the payload -> codes ->
//! the hard decode ([`VqVae::decode_codes`]) -> one PNG an image, written into a temporary
//! directory renamed into place, so nothing partial is left. Both remove the temporaries that
//! killed processes left in the directory they write into.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use sha2::Digest;

use super::format::Container;
use super::prior::{CodePrior, PriorSource};
use super::{EntropyModel, payload_bits};
use crate::config::RunConfig;
use crate::data::{Dataset, ImageSet};
use crate::error::InputError;
use crate::io::{remove_dead_temporaries, temp_name, write_atomic};
use crate::model::VqVae;
use crate::quantizer::Quantizer;
use crate::quantizer::{PriorKind, host_f32};
use crate::report::pixel_u8;
use crate::run::RunDir;
use crate::train::{batch_tensor, load_run};

/// Images a batch through the encoder or the decoder.
const BATCH: usize = 256;

/// The coded rate of a set of images next to its bounds, per image.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CodedRate {
    pub images: usize,
    /// Bits of the ANS payload (32 a word) per image.
    pub bits_per_image: f64,
    /// The same per pixel (per value: channels x height x width).
    pub bits_per_pixel: f64,
    /// The ideal length under the coding prior: sum of -log2 r(z) over the codes, per image.
    pub ideal_bits_per_image: f64,
    /// L * H(Z) / ln 2: the plug-in entropy of these codes, the bound no fixed prior beats.
    pub entropy_bits_per_image: f64,
    pub prior: PriorSource,
}

/// Where the images to compress come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A split of the run's data set.
    Train,
    Test,
    /// Every PNG/JPEG in a directory (resized to the run's image size).
    Dir(PathBuf),
}

/// What `compress` wrote.
#[derive(Clone, Debug)]
pub struct Compressed {
    pub file_bytes: usize,
    pub rate: CodedRate,
    /// With `--compare`: the decode's quality and the other ways to store the images.
    pub comparison: Option<Comparison>,
}

/// The hard decode's PSNR and the sizes of the images stored raw and as PNG.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// PSNR (dB) of the hard decode against the images, pixels in [0, 1].
    pub psnr: f64,
    /// 8-bit pixels: images x channels x height x width bytes.
    pub raw_bytes: usize,
    /// The images as PNG files (the `image` crate's encoder), summed.
    pub png_bytes: usize,
}

/// Decodes the code maps and measures them against the images; encodes the images as PNG.
fn compare(
    coder: &Coder,
    set: &ImageSet,
    codes: &[u32],
    grid: [usize; 2],
) -> anyhow::Result<Comparison> {
    let per_image = grid[0] * grid[1] * coder.cfg.quantizer.stages();
    let (mut sse, mut png_bytes) = (0.0f64, 0usize);
    let idx: Vec<usize> = (0..set.n).collect();
    for (b, chunk) in idx.chunks(BATCH).zip(codes.chunks(per_image * BATCH)) {
        let x = host_f32(
            coder
                .model
                .decode_codes(chunk, coder.quantizer.as_ref(), b.len(), grid),
        );
        let orig = set.batch_f32(b);
        sse += x
            .iter()
            .zip(&orig)
            .map(|(a, o)| ((a - o) as f64).powi(2))
            .sum::<f64>();
    }
    let len = set.image_len();
    let [c, h, w] = [set.channels, set.height, set.width];
    for i in 0..set.n {
        let img = &set.pixels[i * len..(i + 1) * len];
        let mut buf = std::io::Cursor::new(Vec::new());
        let interleaved: Vec<u8> = (0..h * w)
            .flat_map(|p| (0..c).map(move |ch| img[ch * h * w + p]))
            .collect();
        let color = if c == 1 {
            image::ExtendedColorType::L8
        } else {
            image::ExtendedColorType::Rgb8
        };
        image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut buf),
            &interleaved,
            w as u32,
            h as u32,
            color,
        )?;
        png_bytes += buf.into_inner().len();
    }
    let mse = sse / (set.n * len).max(1) as f64;
    Ok(Comparison {
        psnr: -10.0 * mse.log10(),
        raw_bytes: set.n * len,
        png_bytes,
    })
}

/// A run's newest checkpoint ready to code: the model, its hash and its coding prior.
struct Coder {
    cfg: RunConfig,
    model: VqVae,
    /// The run's quantizer: latents to codes and codes to codewords.
    quantizer: Box<dyn Quantizer>,
    device: Device,
    hash: [u8; 32],
    prior: CodePrior,
    entropy: EntropyModel,
}

/// SHA-256 over the weights (name, shape, little-endian values, in name order): the identity of
/// the model a `.vqz` file was written with.
pub fn model_hash(model: &VqVae) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for (name, (shape, values)) in model.export() {
        h.update(name.as_bytes());
        h.update([0]);
        for s in shape {
            h.update((s as u64).to_le_bytes());
        }
        for v in values {
            h.update(v.to_le_bytes());
        }
    }
    h.finalize().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Coder {
    /// The run's newest checkpoint, loaded.
    fn open(run: &RunDir, data_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let (cfg, model, device, _) = load_run(run, data_dir)?;
        Self::new(run, cfg, model.valid(), device, None)
    }

    /// A model already in memory (an inference model: `valid()`); `train`, the training split
    /// when the caller has it loaded, saves loading it again for the prior.
    fn new(
        run: &RunDir,
        cfg: RunConfig,
        model: VqVae,
        device: Device,
        train: Option<&ImageSet>,
    ) -> anyhow::Result<Self> {
        let hash = model_hash(&model);
        let prior = coding_prior(run, &cfg, &model, &hash, &device, train)?;
        let entropy = prior
            .entropy_model(cfg.quantizer.stages())
            .map_err(|e| InputError::file(run.path().join(PRIOR_FILE), e))?;
        Ok(Self {
            quantizer: crate::quantizer::build(&cfg.quantizer),
            cfg,
            model,
            device,
            hash,
            prior,
            entropy,
        })
    }

    /// The code maps of every image of `set`, image after image, and the grid of one image.
    fn codes(&self, set: &ImageSet) -> (Vec<u32>, [usize; 2]) {
        let mut all = Vec::new();
        let mut grid = [0, 0];
        let idx: Vec<usize> = (0..set.n).collect();
        for b in idx.chunks(BATCH) {
            let x = batch_tensor(set, b, &self.device);
            let (c, g) = self.model.codes(x, self.quantizer.as_ref());
            all.extend(c);
            grid = g;
        }
        (all, grid)
    }

    /// Coded, ideal and entropy rates of `codes` (of `images` images of `pixels` values each).
    fn rate(
        &self,
        codes: &[u32],
        images: usize,
        pixels: usize,
    ) -> anyhow::Result<(Vec<u32>, CodedRate)> {
        let words = self.entropy.encode(codes).map_err(anyhow::Error::msg)?;
        let n = images.max(1) as f64;
        let mut counts = vec![0u64; self.entropy.k()];
        for &c in codes {
            counts[c as usize] += 1;
        }
        // The plug-in entropy of each stage's codes (one stage: the map's).
        let total = (codes.len() / self.entropy.stages()).max(1) as f64;
        let entropy_bits: f64 = counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| -(c as f64) * (c as f64 / total).log2())
            .sum();
        let bits = payload_bits(words.len());
        Ok((
            words,
            CodedRate {
                images,
                bits_per_image: bits / n,
                bits_per_pixel: bits / (n * pixels as f64),
                ideal_bits_per_image: self.entropy.ideal_bits(codes) / n,
                entropy_bits_per_image: entropy_bits / n,
                prior: self.prior.source.clone(),
            },
        ))
    }
}

/// The file the empirical coding prior is kept in, in the run directory.
pub const PRIOR_FILE: &str = "code-prior.json";

/// The run's coding prior ([`super::prior`]): learned, or the stored empirical marginal of this
/// model, or a new estimate over the training split (then stored).
fn coding_prior(
    run: &RunDir,
    cfg: &RunConfig,
    model: &VqVae,
    hash: &[u8; 32],
    device: &Device,
    train: Option<&ImageSet>,
) -> anyhow::Result<CodePrior> {
    let hash = hex(hash);
    if cfg.rate.prior == PriorKind::Learned {
        let log_r: Vec<f64> = host_f32(model.log_prior(cfg.quantizer.stages()))
            .into_iter()
            .map(f64::from)
            .collect();
        return Ok(CodePrior::learned(&log_r, hash));
    }
    let path = run.path().join(PRIOR_FILE);
    if path.exists() {
        let p = CodePrior::load(&path)?;
        if p.model_hash == hash && p.probabilities.len() == model.k() {
            return Ok(p);
        }
    }
    let loaded;
    let train = match train {
        Some(t) => t,
        None => {
            loaded = cfg.data.load(cfg.training.seed)?.train;
            &loaded
        }
    };
    let mut counts = vec![0u64; model.k()];
    let idx: Vec<usize> = (0..train.n).collect();
    let q = crate::quantizer::build(&cfg.quantizer);
    for b in idx.chunks(BATCH) {
        for c in model.codes(batch_tensor(train, b, device), q.as_ref()).0 {
            counts[c as usize] += 1;
        }
    }
    let p = CodePrior::empirical(&counts, train.n, hash);
    p.save(&path)?;
    Ok(p)
}

/// `vqib compress`: codes the images of `source` with the run's newest checkpoint into `out`,
/// written atomically (`.OUT.tmp-PID`, renamed); the temporaries of dead processes beside `out`
/// are removed first ([`remove_dead_temporaries`]).
pub fn compress_run(
    run: &RunDir,
    source: &Source,
    out: &Path,
    data_dir: Option<PathBuf>,
    with_comparison: bool,
) -> anyhow::Result<Compressed> {
    let (cfg, model, device, _) = load_run(run, data_dir)?;
    let shape = cfg
        .data
        .image_shape
        .ok_or_else(|| InputError::file(run.config_path(), "lacks the image shape"))?;
    // A split of the data set: loaded once, for the images and (when needed) the prior.
    let data = match source {
        Source::Dir(_) => None,
        Source::Train | Source::Test => Some(cfg.data.load(cfg.training.seed)?),
    };
    let coder = Coder::new(
        run,
        cfg,
        model.valid(),
        device,
        data.as_ref().map(|d| &d.train),
    )?;
    let set = match (source, data) {
        (Source::Dir(d), _) => crate::data::read_image_dir(d, shape)?,
        (Source::Train, Some(data)) => data.train,
        (_, Some(data)) => data.test,
        (_, None) => unreachable!("a split source loads the data"),
    };
    let too_big =
        |what: &str, v: usize| InputError::file(out, format!("{what} {v} does not fit the format"));
    let images = u32::try_from(set.n).map_err(|_| too_big("image count", set.n))?;
    let (codes, grid) = coder.codes(&set);
    let (payload, rate) = coder.rate(&codes, set.n, set.image_len())?;
    let u16_of = |v: usize| u16::try_from(v).map_err(|_| too_big("size", v));
    let container = Container {
        stages: coder.entropy.stages(),
        model_hash: coder.hash,
        prior_checksum: coder.prior.checksum,
        k: coder.entropy.k() as u32,
        images,
        image_shape: [u16_of(shape[0])?, u16_of(shape[1])?, u16_of(shape[2])?],
        grid: [u16_of(grid[0])?, u16_of(grid[1])?],
        payload,
    };
    let bytes = container.to_bytes();
    remove_dead_temporaries(parent_dir(out));
    write_atomic(out, &bytes)?;
    let comparison = match with_comparison {
        true => Some(compare(&coder, &set, &codes, grid)?),
        false => None,
    };
    Ok(Compressed {
        file_bytes: bytes.len(),
        rate,
        comparison,
    })
}

/// `vqib decompress`: decodes `file` with the run's newest checkpoint into PNGs
/// `000000.png`, ... in `out` (which must not exist). Returns the number of images.
///
/// Nothing is written unless the whole file checks out: its model, prior and shapes, its image
/// count against the memory its images take ([`Container::check_memory`]) and against the
/// payload (every code is decoded first). The PNGs go into a temporary directory
/// `.OUT.tmp-PID` renamed to `out`; before it is made, the temporaries of dead processes beside
/// `out` are removed ([`remove_dead_temporaries`]).
pub fn decompress_run(run: &RunDir, file: &Path, out: &Path) -> anyhow::Result<usize> {
    let mut c = Container::read(file)?;
    if out.exists() {
        return Err(
            InputError::file(out, "already exists; decompress writes a new directory").into(),
        );
    }
    let coder = Coder::open(run, None)?;
    let bad = |m: String| InputError::file(file, m);
    if c.model_hash != coder.hash {
        return Err(bad(format!(
            "was written by another model (hash {}...); the newest checkpoint of {} has {}...",
            &hex(&c.model_hash)[..12],
            run.path().display(),
            &hex(&coder.hash)[..12]
        ))
        .into());
    }
    if c.prior_checksum != coder.prior.checksum {
        return Err(bad(format!(
            "was coded with another prior (checksum {:08x}); the run's prior has {:08x}",
            c.prior_checksum, coder.prior.checksum
        ))
        .into());
    }
    let shape = coder.cfg.data.image_shape.unwrap_or_default();
    let want_grid = [shape[1] / 4, shape[2] / 4];
    let got_shape = c.image_shape.map(usize::from);
    let got_grid = c.grid.map(usize::from);
    if c.k as usize != coder.entropy.k() || got_shape != shape || got_grid != want_grid {
        return Err(bad(format!(
            "holds K = {}, images {got_shape:?}, grid {got_grid:?}; the model has K = {}, images {shape:?}, grid {want_grid:?}",
            c.k,
            coder.entropy.k(),
        ))
        .into());
    }
    let per_image = want_grid[0] * want_grid[1] * coder.cfg.quantizer.stages();
    c.stages = coder.entropy.stages();
    // The count bounded before anything of its size exists, then checked against the payload
    // (every code decoded into memory) before anything is written.
    c.check_memory(
        file,
        crate::device::available_memory().unwrap_or(UNKNOWN_MEMORY),
    )?;
    let codes = coder
        .entropy
        .decode(std::mem::take(&mut c.payload), c.codes())
        .map_err(|e| bad(format!("damaged payload or image count: {e}")))?;
    write_images(&coder, &codes, per_image, want_grid, shape, out)?;
    Ok(c.images as usize)
}

/// The memory [`decompress_run`] assumes where the free memory cannot be read (not Linux).
const UNKNOWN_MEMORY: u64 = 16 << 30;

/// Decodes code maps batch by batch into PNGs in a temporary directory, then renames it to `out`.
fn write_images(
    coder: &Coder,
    codes: &[u32],
    per_image: usize,
    grid: [usize; 2],
    [c, h, w]: [usize; 3],
    out: &Path,
) -> anyhow::Result<()> {
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let parent = parent_dir(out);
    let tmp = parent.join(temp_name(name));
    remove_dead_temporaries(parent);
    let io = |p: &Path, e: std::io::Error| InputError::file(p, format!("cannot write: {e}"));
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    let written = (|| -> anyhow::Result<()> {
        let mut i = 0usize;
        for batch in codes.chunks(per_image * BATCH) {
            let b = batch.len() / per_image;
            let x = host_f32(
                coder
                    .model
                    .decode_codes(batch, coder.quantizer.as_ref(), b, grid),
            );
            for img in x.chunks_exact(c * h * w) {
                let p = tmp.join(format!("{i:06}.png"));
                save_png(img, [c, h, w], &p)?;
                i += 1;
            }
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).map_err(|e| io(out, e))?;
    Ok(())
}

/// The directory `path` is in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// One image (`[c, h, w]` in [0, 1]) as an 8-bit grey or RGB PNG.
pub fn save_png(img: &[f32], [c, h, w]: [usize; 3], path: &Path) -> anyhow::Result<()> {
    let (wu, hu) = (w as u32, h as u32);
    let result = if c == 1 {
        let px: Vec<u8> = img.iter().map(|&v| pixel_u8(v)).collect();
        image::GrayImage::from_raw(wu, hu, px).map(|g| g.save(path))
    } else {
        let px: Vec<u8> = (0..h * w)
            .flat_map(|p| (0..3).map(move |ch| pixel_u8(img[ch * h * w + p])))
            .collect();
        image::RgbImage::from_raw(wu, hu, px).map(|g| g.save(path))
    };
    match result {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(InputError::file(path, format!("cannot write: {e}")).into()),
        None => anyhow::bail!("image buffer of the wrong size for {}", path.display()),
    }
}

/// The coded rate of the test split for `vqib eval` and a finished run's `eval.json`.
pub fn coded_rate(
    run: &RunDir,
    cfg: &RunConfig,
    model: &VqVae,
    data: &Dataset,
    device: &Device,
) -> anyhow::Result<CodedRate> {
    let coder = Coder::new(
        run,
        cfg.clone(),
        model.clone(),
        device.clone(),
        Some(&data.train),
    )?;
    let (codes, _) = coder.codes(&data.test);
    Ok(coder.rate(&codes, data.test.n, data.test.image_len())?.1)
}

/// The rows `vqib compress` prints.
pub fn rate_rows(c: &Compressed) -> Vec<(&'static str, String)> {
    let r = &c.rate;
    let prior = match &r.prior {
        PriorSource::Learned => "learned r(z)".to_string(),
        PriorSource::Empirical { images, .. } => {
            format!("code marginal of {images} training images")
        }
    };
    let mut rows = vec![
        ("images", r.images.to_string()),
        ("file bytes", c.file_bytes.to_string()),
        ("coded bits / image", format!("{:.1}", r.bits_per_image)),
        ("coded bits / pixel", format!("{:.4}", r.bits_per_pixel)),
        (
            "sum -log2 r(z) / image",
            format!("{:.1}", r.ideal_bits_per_image),
        ),
        (
            "L H(Z) / ln 2 / image",
            format!("{:.1}", r.entropy_bits_per_image),
        ),
        ("coding prior", prior),
    ];
    if let Some(x) = &c.comparison {
        let ratio = |b: usize| format!("{:.1}x", b as f64 / c.file_bytes as f64);
        rows.push(("PSNR of the decode (dB)", format!("{:.2}", x.psnr)));
        rows.push(("raw 8-bit bytes", x.raw_bytes.to_string()));
        rows.push(("PNG bytes", x.png_bytes.to_string()));
        rows.push(("ratio to raw", ratio(x.raw_bytes)));
        rows.push(("ratio to PNG", ratio(x.png_bytes)));
    }
    rows
}
