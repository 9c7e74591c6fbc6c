//! What a run holds in memory, by part, and the check that refuses a run the machine cannot hold
//! ([`RunConfig::memory_needed`], [`RunConfig::check_memory`]): made before anything is created,
//! trained or allocated, for every count that sizes an allocation.

use super::RunConfig;
use crate::data::DatasetKind;
use crate::error::InputError;
use crate::quantizer::rate::RateKind;

/// Bytes in a GiB, for messages.
const GIB: f64 = (1u64 << 30) as f64;

impl RunConfig {
    /// What a training run on `images` images of shape `[c, h, w]` holds in memory, in bytes, by
    /// part. The coefficients come from peak resident sets measured on the 28x28 model (batch 64
    /// to 1024, K up to 65536 with a rate term): about 10.5 bytes per conv channel and pixel of a
    /// batch image, and 20 bytes per entry of the N x K matrix a rate term builds.
    /// The generated `shapes` data counts whatever `images` says: it is made in memory from the
    /// configuration, so a damaged `config.json` read by `vqib eval` is caught too.
    pub fn memory_needed(&self, [c, h, w]: [usize; 3], images: usize) -> Vec<(&'static str, f64)> {
        let images = if self.data.dataset == DatasetKind::Shapes {
            images.max(self.data.shapes_train.saturating_add(self.data.shapes_test))
        } else {
            images
        };
        let (q, hid) = (&self.quantizer, self.hidden() as f64);
        let stages = q.stages() as f64;
        let (k, d, b) = (
            q.codebook_size() as f64,
            q.code_dim() as f64,
            self.batch_size() as f64,
        );
        // In f64: an image size from a damaged config.json must not wrap to a small product.
        let (c, pixels) = (c as f64, h as f64 * w as f64);
        let grid = (h / 4) as f64 * (w / 4) as f64;
        let latents = b * grid;
        let params = 72.0 * hid * hid + 32.0 * hid * c + 10.0 * hid * d;
        // Evaluation batches hold at least 256 images; each draws `--eval-samples` code maps
        // (the sorted draws and the maps, u32 each) and, for soft EM, `--samples` codes a row.
        let eval_latents = b.max(256.0) * grid;
        let mut parts = vec![
            (
                "the data (--shapes-train, --shapes-test, the files)",
                images as f64 * c * pixels,
            ),
            (
                "weights and Adam state (--hidden, --code-dim)",
                24.0 * params,
            ),
            (
                "codebook and its EMA and Adam state (--codebook-size, --code-dim, --stages)",
                if q.has_codebook() {
                    40.0 * k * stages * d
                } else {
                    0.0
                },
            ),
            (
                "the prior over the code space, its Adam state and the coding prior (--codebook-size, --levels, --code-dim, --stages)",
                40.0 * k * stages,
            ),
            (
                "activations of a batch (--batch-size, --hidden)",
                b * (12.0 * hid + 16.0 * c) * pixels,
            ),
            (
                "code maps of the expected distortion (--eval-samples)",
                8.0 * eval_latents * self.training.eval_samples as f64,
            ),
        ];
        if self.rate.kind != RateKind::None {
            parts.push((
                "the rate term's N x K posterior (--batch-size, --codebook-size)",
                24.0 * latents * k,
            ));
        }
        if q.codebook_by_gradient() {
            parts.push((
                "latents of a batch (--batch-size, --code-dim)",
                32.0 * latents * d,
            ));
        } else {
            parts.push((
                "latents and samples of a batch (--batch-size, --code-dim, --samples)",
                latents * (32.0 * d + 8.0 * q.samples as f64),
            ));
            parts.push((
                "samples of an evaluation batch (--samples)",
                8.0 * eval_latents * q.samples as f64,
            ));
        }
        parts
    }

    /// Refuses a run whose memory ([`Self::memory_needed`]) exceeds what the machine has
    /// ([`crate::device::available_memory`]), saying both figures.
    pub fn check_memory(&self, shape: [usize; 3], images: usize) -> Result<(), InputError> {
        match crate::device::available_memory() {
            Some(have) => memory_fits(&self.memory_needed(shape, images), have as f64),
            None => Ok(()),
        }
    }
}

/// Whether `parts` fit in `have` bytes; the error names the total and the largest parts.
fn memory_fits(parts: &[(&'static str, f64)], have: f64) -> Result<(), InputError> {
    let need: f64 = parts.iter().map(|p| p.1).sum();
    if need <= have {
        return Ok(());
    }
    let mut big = parts.to_vec();
    big.sort_by(|a, b| b.1.total_cmp(&a.1));
    let list: Vec<String> = big
        .iter()
        .take(2)
        .map(|(what, n)| format!("{what} {:.1} GiB", n / GIB))
        .collect();
    Err(InputError::config(format!(
        "this run needs about {:.1} GiB of memory ({}), but {:.1} GiB are available; make the largest parts smaller (the flags that size them are in brackets)",
        need / GIB,
        list.join(", "),
        have / GIB
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_too_big_for_the_memory_is_refused_with_the_figures() {
        let mut c = RunConfig::default();
        c.quantizer.codebook_size = Some(2_000_000_000);
        let parts = c.memory_needed([1, 28, 28], 60_000);
        let need: f64 = parts.iter().map(|p| p.1).sum();
        // 2e9 codewords of 64 f32 with their state: hundreds of GiB.
        assert!(need > 4e12, "{need}");
        let e = memory_fits(&parts, 16.0 * GIB).unwrap_err().to_string();
        assert!(
            e.contains("16.0 GiB are available")
                && e.contains("codebook")
                && e.contains("--codebook-size"),
            "{e}"
        );
        // The default MNIST run fits in a few hundred MiB (measured: about 0.2 GiB resident).
        let mut mnist = RunConfig::default();
        mnist.data.dataset = DatasetKind::Mnist;
        let parts = mnist.memory_needed([1, 28, 28], 60_000);
        let need: f64 = parts.iter().map(|p| p.1).sum();
        assert!(need > 0.1 * GIB && need < 0.5 * GIB, "{}", need / GIB);
        assert!(memory_fits(&parts, GIB).is_ok());
    }
}
