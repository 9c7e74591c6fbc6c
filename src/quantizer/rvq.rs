//! `rvq`: residual vector quantization (Zeghidour et al. 2021, "SoundStream", algorithm 1;
//! EnCodec). S codebooks E_1..E_S of K codewords each; stage s quantizes what the stages before
//! it left:
//!
//! r_1 = z_e,  k_s = argmin_j ||r_s - e_{s,j}||^2,  q_s = e_{s,k_s},  r_{s+1} = r_s - q_s,
//! z_q = sum_s q_s.
//!
//! The code of a position is the S-tuple (k_1, ..., k_S), K^S in all. Each codebook learns by its
//! own codebook term and the encoder by the commitment term:
//!
//! L_q = sum_s ||sg(r_s) - q_s||^2 + beta ||z_e - sg(z_q)||^2,
//!
//! or, with `--update ema`, beta ||z_e - sg(z_q)||^2 alone while each codebook follows the
//! exponential moving averages of the residuals r_s assigned to its codewords (vq-ema's update,
//! stage by stage: one EMA state over the S*K rows, each stage's rows fed its own residuals),
//! and the decoder's gradient reaches z_e through z_q by the straight-through copy or the rotation
//! trick (`--estimator`). With S = 1 this is `vq` exactly. The residual's norm cannot grow from
//! one stage to the next when the codebook holds the zero vector, and in practice falls.
//!
//! The codebooks are one parameter `[S*K, D]`, stage s in rows sK..(s+1)K, and codes are its row
//! numbers: stage s's code is sK + k_s, so the S codes of a position are distinct rows of one
//! table (the training histogram, the dead-code tracker and the prior see S*K codes; a stage's
//! prior is its K entries). k-means++ initialises stage s on the residuals r_s of the first
//! batch; dead-code restarts re-seed a stage's unused codeword from random rows of z_e.

use burn::tensor::{Int, Tensor};
use rand::rngs::StdRng;

use super::config::{CodeSpace, CodebookUpdate, Estimator, QuantizerConfig};
use super::ema::EmaCodebook;
use super::init::kmeans_pp;
use super::vq::nearest_resident;
use super::{
    Context, QuantizerKind, QuantizerOutput, QuantizerParams, Registered, host_f32, index_tensor,
};
use crate::kernels::assign::{self, Codebook};

/// The residual VQ quantizer.
#[derive(Debug)]
pub struct Rvq {
    beta: f64,
    estimator: Estimator,
    k: usize,
    stages: usize,
    /// The moving averages of `--update ema`, over the S*K rows.
    ema: Option<EmaCodebook>,
}

impl Registered for Rvq {
    const CODEBOOK_BY_GRADIENT: bool = true;

    fn new(cfg: &QuantizerConfig) -> Self {
        Self {
            beta: cfg.beta,
            estimator: cfg.estimator(),
            k: cfg.codebook_size(),
            stages: cfg.stages(),
            ema: (cfg.codebook_update() == CodebookUpdate::Ema).then(|| {
                EmaCodebook::new(
                    cfg.codebook_size() * cfg.stages(),
                    cfg.code_dim(),
                    cfg.decay(),
                    cfg.ema_epsilon,
                )
            }),
        }
    }
}

impl Rvq {
    /// Stage s's codebook `[K, D]` of the stacked one.
    fn stage(&self, e: &Tensor<2>, s: usize) -> Tensor<2> {
        let d = e.dims()[1];
        e.clone().slice([s * self.k..(s + 1) * self.k, 0..d])
    }

    /// The codes (`[N*S]`, stage s as sK + k_s) and residuals of rows `z` (`[N*D]`) on the host.
    pub fn host_codes(&self, z: &[f32], e: &[f32], d: usize) -> (Vec<u32>, Vec<f32>) {
        let n = z.len() / d;
        let mut r = z.to_vec();
        let mut codes = vec![0u32; n * self.stages];
        for s in 0..self.stages {
            let cb = &e[s * self.k * d..(s + 1) * self.k * d];
            let ks = quantize_residuals(&mut r, cb, d);
            for (i, &k) in ks.iter().enumerate() {
                codes[i * self.stages + s] = (s * self.k) as u32 + k;
            }
        }
        (codes, r)
    }
}

/// One stage on the host: the nearest codeword of `cb` (`[K*D]`) to each residual row of `r`
/// (`[N*D]`), subtracted from it (r_{s+1} = r_s - q_s); returns the codes.
fn quantize_residuals(r: &mut [f32], cb: &[f32], d: usize) -> Vec<u32> {
    let ks = assign::nearest(r, &Codebook::new(cb, d));
    for (row, &k) in r.chunks_exact_mut(d).zip(&ks) {
        let q = &cb[k as usize * d..(k as usize + 1) * d];
        for (x, y) in row.iter_mut().zip(q) {
            *x -= y;
        }
    }
    ks
}

impl super::Quantizer for Rvq {
    fn kind(&self) -> QuantizerKind {
        QuantizerKind::Rvq
    }

    fn code_space(&self) -> CodeSpace {
        CodeSpace {
            size: self.k as u64,
            stages: self.stages,
        }
    }

    fn forward(&self, z_e: Tensor<2>, params: &QuantizerParams, ctx: Context) -> QuantizerOutput {
        let [n, d] = z_e.dims();
        let e = params.codebook();
        // On the host every stage's search runs in one pass of the host kernels (one read of
        // z_e and the codebook); on a device stage by stage as tensor operations.
        let host: Option<Tensor<2, Int>> = (!ctx.resident).then(|| {
            let (zv, ev) = (host_f32(z_e.clone().detach()), host_f32(e.clone().detach()));
            let (codes, _) = self.host_codes(&zv, &ev, d);
            index_tensor(&codes, &z_e.device()).reshape([n, self.stages])
        });
        let mut residual = z_e.clone().detach();
        let mut residuals: Vec<Tensor<2>> = Vec::with_capacity(self.stages);
        let mut z_q: Option<Tensor<2>> = None;
        let mut codebook_loss: Option<Tensor<1>> = None;
        let mut codes: Vec<Tensor<2, Int>> = Vec::with_capacity(self.stages);
        for s in 0..self.stages {
            let cb = self.stage(&e, s);
            let k = match &host {
                Some(all) => all
                    .clone()
                    .slice([0..n, s..s + 1])
                    .reshape([n])
                    .sub_scalar((s * self.k) as i64),
                None => nearest_resident(residual.clone(), cb.clone().detach()),
            };
            let q = cb.select(0, k.clone());
            let term = (q.clone() - residual.clone()).square().mean();
            codebook_loss = Some(match codebook_loss {
                Some(l) => l + term,
                None => term,
            });
            residuals.push(residual.clone());
            residual = residual - q.clone().detach();
            z_q = Some(match z_q {
                Some(t) => t + q,
                None => q,
            });
            codes.push(k.add_scalar((s * self.k) as i64).reshape([n, 1]));
        }
        let z_q = z_q.expect("at least one stage");
        let indices = Tensor::cat(codes, 1).reshape([n * self.stages]);
        let mut out = QuantizerOutput::with_estimator(self.estimator, z_e, z_q, indices);
        out.codebook_loss = codebook_loss.expect("at least one stage");
        if self.ema.is_some() {
            let d = residual.dims()[1];
            out.ema_rows = Some(Tensor::stack::<3>(residuals, 1).reshape([n * self.stages, d]));
        }
        out
    }

    /// sum_s ||sg(r_s) - q_s||^2 + beta ||z_e - sg(z_q)||^2; beta ||z_e - sg(z_q)||^2 with
    /// `--update ema`.
    fn loss(&self, out: &QuantizerOutput) -> Tensor<1> {
        let commit = out.commitment_loss.clone().mul_scalar(self.beta);
        match self.ema {
            Some(_) => commit,
            None => out.codebook_loss.clone() + commit,
        }
    }

    /// `--update ema`: the residual rows (`[N*S*D]`, as [`QuantizerOutput::ema_rows`]) enter
    /// the moving averages of their codes' rows.
    fn update(
        &mut self,
        rows: &[f32],
        indices: &[u32],
        _samples: Option<&[u32]>,
    ) -> Option<Vec<f32>> {
        self.ema.as_mut().map(|e| e.update(rows, indices))
    }

    /// One-hot of each residual's code over the S*K rows.
    fn ema_weights(&self, out: &QuantizerOutput) -> Option<Tensor<2>> {
        self.ema
            .as_ref()
            .map(|e| super::one_hot(out.indices.clone(), e.k))
    }

    fn ema(&self) -> Option<&EmaCodebook> {
        self.ema.as_ref()
    }

    fn ema_mut(&mut self) -> Option<&mut EmaCodebook> {
        self.ema.as_mut()
    }

    fn initial_codebook(&self, z: &[f32], d: usize, k: usize, rng: &mut StdRng) -> Vec<f32> {
        let mut r = z.to_vec();
        let mut all = Vec::with_capacity(self.stages * k * d);
        for _ in 0..self.stages {
            let cb = kmeans_pp(&r, d, k, 10, rng);
            quantize_residuals(&mut r, &cb, d);
            all.extend(cb);
        }
        all
    }

    fn codes(&self, z_e: &[f32], params: &QuantizerParams) -> Vec<u32> {
        let e = params.codebook_values();
        let d = params.codebook().dims()[1];
        self.host_codes(z_e, &e, d).0
    }

    /// The sum of each position's S codewords.
    fn codewords(&self, codes: &[u32], params: &QuantizerParams) -> Vec<f32> {
        let e = params.codebook_values();
        let d = params.codebook().dims()[1];
        let mut out = Vec::with_capacity(codes.len() / self.stages * d);
        for tuple in codes.chunks_exact(self.stages) {
            let mut v = vec![0.0f32; d];
            for &c in tuple {
                for (x, y) in v.iter_mut().zip(&e[c as usize * d..(c as usize + 1) * d]) {
                    *x += y;
                }
            }
            out.extend(v);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantizer::Quantizer;
    use burn::tensor::{Device, Distribution, TensorData};
    use rand::SeedableRng;

    /// Parameters holding the stacked codebooks `e` (`[S*K, D]`).
    fn stacked(e: &[f32], shape: [usize; 2], dev: &Device) -> QuantizerParams {
        QuantizerParams {
            codebook: Some(burn::module::Param::from_tensor(Tensor::from_data(
                TensorData::new(e.to_vec(), shape),
                dev,
            ))),
            precision: None,
        }
    }

    fn cfg(stages: usize, k: usize, d: usize) -> QuantizerConfig {
        QuantizerConfig {
            kind: QuantizerKind::Rvq,
            stages: Some(stages),
            codebook_size: Some(k),
            code_dim: Some(d),
            ..Default::default()
        }
    }

    /// On data, with k-means codebooks: the residual's norm does not grow stage by stage, the
    /// codes' codewords sum to z_q, and the device forward gives the host's codes.
    #[test]
    fn residual_does_not_grow_and_paths_agree() {
        let (n, d, k, s) = (300, 4, 8, 3);
        let q = <Rvq as Registered>::new(&cfg(s, k, d));
        let dev = Device::flex();
        let z = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev);
        let zv = crate::device::host_f32(z.clone());
        let mut rng = StdRng::seed_from_u64(3);
        let e = q.initial_codebook(&zv, d, k, &mut rng);
        let params = stacked(&e, [s * k, d], &dev);
        let mut last = zv.iter().map(|x| (*x as f64).powi(2)).sum::<f64>();
        for stages in 1..=s {
            let part = Rvq {
                stages,
                ..<Rvq as Registered>::new(&cfg(s, k, d))
            };
            let (_, r) = part.host_codes(&zv, &e, d);
            let norm = r.iter().map(|x| (*x as f64).powi(2)).sum::<f64>();
            assert!(norm <= last + 1e-6, "stage {stages}: {norm} > {last}");
            last = norm;
        }
        let codes = q.codes(&zv, &params);
        assert!(
            codes
                .chunks(s)
                .all(|t| (0..s).all(|j| t[j] as usize / k == j))
        );
        let ctx = Context {
            rng: &mut rng,
            resident: false,
            step: None,
        };
        let out = q.forward(z.clone(), &params, ctx);
        assert_eq!(crate::device::host_u32(out.indices.clone()), codes);
        let zq = crate::device::host_f32(out.z_q);
        let sum = q.codewords(&codes, &params);
        assert!(zq.iter().zip(&sum).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    /// `--update ema` with decay 0: after one update each stage's codeword is the mean of the
    /// residuals r_s assigned to it (stage 0: of the rows of z; stage 1: of z minus stage 0's
    /// codeword), up to the Laplace smoothing; the loss is the commitment term alone.
    #[test]
    fn ema_update_averages_each_stage_residuals() {
        let (n, d, k, s) = (400, 3, 4, 2);
        let mut c = cfg(s, k, d);
        c.update = Some(CodebookUpdate::Ema);
        c.ema_decay = Some(0.0);
        let mut q = <Rvq as Registered>::new(&c);
        let dev = Device::flex();
        let z = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev);
        let zv = crate::device::host_f32(z.clone());
        let mut rng = StdRng::seed_from_u64(5);
        let e = q.initial_codebook(&zv, d, k, &mut rng);
        let params = stacked(&e, [s * k, d], &dev);
        let out = q.forward(
            z,
            &params,
            Context {
                rng: &mut rng,
                resident: false,
                step: None,
            },
        );
        let loss = crate::device::host_f32(q.loss(&out))[0];
        let commit = crate::device::host_f32(out.commitment_loss.clone())[0];
        assert!(
            (loss - 0.25 * commit).abs() < 1e-7,
            "the codebook term is not trained on"
        );
        let rows = crate::device::host_f32(out.ema_rows.clone().expect("residual rows"));
        let codes = crate::device::host_u32(out.indices.clone());
        let new = q
            .update(&rows, &codes, None)
            .expect("the EMA moves the codebooks");
        // The residual rows: stage 0's are z, stage 1's z minus its stage-0 codeword.
        for (i, t) in codes.chunks(s).enumerate() {
            let c0 = t[0] as usize;
            for j in 0..d {
                let want1 = zv[i * d + j] - e[c0 * d + j];
                assert!((rows[(i * s) * d + j] - zv[i * d + j]).abs() < 1e-6);
                assert!((rows[(i * s + 1) * d + j] - want1).abs() < 1e-5);
            }
        }
        for row in 0..s * k {
            let members: Vec<usize> = (0..n * s).filter(|&r| codes[r] as usize == row).collect();
            if members.is_empty() {
                continue;
            }
            for j in 0..d {
                let mean = members.iter().map(|&r| rows[r * d + j] as f64).sum::<f64>()
                    / members.len() as f64;
                let got = new[row * d + j] as f64;
                assert!(
                    (got - mean).abs() < 1e-3 * (1.0 + mean.abs()),
                    "row {row}: {got} vs {mean}"
                );
            }
        }
    }

    /// One stage is vq: the same codes, z_q, losses and gradients as `vq` on the same codebook.
    #[test]
    fn one_stage_is_vq() {
        let dev = Device::flex().autodiff();
        let (n, d, k) = (50, 3, 6);
        let z = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let e = Tensor::<2>::random([k, d], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let params = QuantizerParams {
            codebook: Some(burn::module::Param::from_tensor(e.clone())),
            precision: None,
        };
        let mut rng = StdRng::seed_from_u64(1);
        let rvq = <Rvq as Registered>::new(&cfg(1, k, d));
        let vq_cfg = QuantizerConfig {
            kind: QuantizerKind::Vq,
            codebook_size: Some(k),
            code_dim: Some(d),
            ..Default::default()
        };
        let vq = crate::quantizer::build(&vq_cfg);
        let a = rvq.forward(
            z.clone(),
            &params,
            Context {
                rng: &mut rng,
                resident: false,
                step: None,
            },
        );
        let b = vq.forward(
            z.clone(),
            &params,
            Context {
                rng: &mut rng,
                resident: false,
                step: None,
            },
        );
        assert_eq!(
            crate::device::host_u32(a.indices.clone()),
            crate::device::host_u32(b.indices.clone())
        );
        let (la, lb) = (rvq.loss(&a), vq.loss(&b));
        let (va, vb) = (
            crate::device::host_f32(la.clone())[0],
            crate::device::host_f32(lb.clone())[0],
        );
        assert!((va - vb).abs() < 1e-6);
        let ga = (la + a.z_st.sum()).backward();
        let gb = (lb + b.z_st.sum()).backward();
        for t in [&z, &e] {
            let x = crate::device::host_f32(t.grad(&ga).unwrap().into());
            let y = crate::device::host_f32(t.grad(&gb).unwrap().into());
            assert!(x.iter().zip(&y).all(|(p, q)| (p - q).abs() < 1e-6));
        }
    }
}
