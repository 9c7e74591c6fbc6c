//! The rotation trick (Fifty et al. 2024, "Restructuring Vector Quantization with the Rotation
//! Trick", eq. 4-6): how the decoder's gradient reaches z_e through a hard quantizer
//! (`--estimator rotation`, for vq, vq-ema and rvq).
//!
//! The straight-through estimator gives the decoder z_e + sg(z_q - z_e): the value z_q, the
//! gradient g copied to z_e unchanged. The rotation trick writes the same value as a rotation and
//! rescaling of z_e,
//!
//! z_q = sg(lambda R) z_e,  lambda = ||e_k|| / ||z_e||,
//! R = I - 2 r r^T + 2 q u^T,  u = z_e / ||z_e||,  q = e_k / ||e_k||,  r = (u + q) / ||u + q||,
//!
//! R the rotation in the plane of u and q that takes u to q (R u = q, so lambda R z_e = e_k).
//! lambda and R are constants to the gradient, so the decoder's gradient g reaches z_e as
//! lambda R^T g: rotated by the angle between z_e and its codeword, and scaled by their norms'
//! ratio. Computed per row without forming R: R z = z - 2 r (r . z) + 2 q (u . z).

use burn::tensor::Tensor;

use super::config::Estimator;

/// Guards the norms (a zero z_e or codeword) and the antipodal case u = -q, where r is any unit
/// vector orthogonal to u: with r = 0 there, R = I + 2 q u^T still takes u to q.
const EPS: f64 = 1e-12;

/// Row norms `[N, 1]` of `[N, D]`.
fn norms(x: Tensor<2>) -> Tensor<2> {
    x.square().sum_dim(1).sqrt()
}

/// The decoder's input for z_e (`[N, D]`, carrying the gradient) and its codewords z_q (`[N,
/// D]`; detached here): lambda R z_e with lambda and R constants (module docs). Its value is
/// z_q up to rounding; its gradient to z_e is lambda R^T g.
pub fn rotate_to(z_e: Tensor<2>, z_q: Tensor<2>) -> Tensor<2> {
    let z = z_e.clone().detach();
    let e = z_q.detach();
    let zn = norms(z.clone()).clamp_min(EPS);
    let en = norms(e.clone()).clamp_min(EPS);
    let u = z / zn.clone();
    let q = e / en.clone();
    let w = u.clone() + q.clone();
    let r = w.clone() / norms(w).clamp_min(EPS);
    let lambda = en / zn;
    let rz = (r.clone() * z_e.clone()).sum_dim(1);
    let uz = (u * z_e.clone()).sum_dim(1);
    let rotated = z_e - r.mul_scalar(2.0) * rz + q.mul_scalar(2.0) * uz;
    lambda * rotated
}

/// The decoder's input under `estimator`: z_e + sg(z_q - z_e) or [`rotate_to`].
pub fn decoder_input(estimator: Estimator, z_e: Tensor<2>, z_q: Tensor<2>) -> Tensor<2> {
    match estimator {
        Estimator::StraightThrough => z_e.clone() + (z_q - z_e).detach(),
        Estimator::Rotation => rotate_to(z_e, z_q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};

    fn host(t: Tensor<2>) -> Vec<f32> {
        crate::device::host_f32(t)
    }

    /// The forward value is the codeword, and the gradient reaching z_e is lambda R^T g with R
    /// built as a D x D matrix from its definition (checked against the formula on random
    /// vectors).
    #[test]
    fn value_is_the_codeword_and_gradient_is_the_rotated_one() {
        let dev = Device::flex().autodiff();
        let (n, d) = (6, 5);
        let z = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let e = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 2.0), &dev);
        let g = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev);
        let out = rotate_to(z.clone(), e.clone());
        let (ov, ev) = (host(out.clone()), host(e.clone()));
        for (a, b) in ov.iter().zip(&ev) {
            assert!((a - b).abs() < 1e-4, "value {a} is not the codeword's {b}");
        }
        let grads = (out * g.clone().detach()).sum().backward();
        let got = host(z.grad(&grads).expect("z_e gets a gradient").into());
        let (zv, gv) = (host(z.clone().detach()), host(g));
        for i in 0..n {
            let row = |v: &[f32]| -> Vec<f64> {
                v[i * d..(i + 1) * d].iter().map(|&x| x as f64).collect()
            };
            let (zr, er, gr) = (row(&zv), row(&ev), row(&gv));
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let u: Vec<f64> = zr.iter().map(|x| x / norm(&zr)).collect();
            let q: Vec<f64> = er.iter().map(|x| x / norm(&er)).collect();
            let w: Vec<f64> = u.iter().zip(&q).map(|(a, b)| a + b).collect();
            let r: Vec<f64> = w.iter().map(|x| x / norm(&w)).collect();
            let lambda = norm(&er) / norm(&zr);
            // R[a][b] = delta - 2 r_a r_b + 2 q_a u_b; want lambda sum_a R[a][b] g_a.
            for b in 0..d {
                let mut want = 0.0;
                for a in 0..d {
                    let rab = (a == b) as u8 as f64 - 2.0 * r[a] * r[b] + 2.0 * q[a] * u[b];
                    want += lambda * rab * gr[a];
                }
                let have = got[i * d + b] as f64;
                assert!(
                    (have - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "row {i} col {b}: {have} vs {want}"
                );
            }
            // R is a rotation: it keeps g's norm (up to lambda).
            let gn: f64 = (0..d)
                .map(|b| (got[i * d + b] as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!((gn - lambda * norm(&gr)).abs() < 1e-4 * (1.0 + gn));
        }
    }

    /// Straight-through is unchanged: the gradient is copied.
    #[test]
    fn straight_through_copies_the_gradient() {
        let dev = Device::flex().autodiff();
        let z = Tensor::<2>::random([3, 4], Distribution::Default, &dev).require_grad();
        let e = Tensor::<2>::random([3, 4], Distribution::Default, &dev);
        let g = Tensor::<2>::from_data(
            TensorData::new((0..12).map(|x| x as f32).collect(), [3, 4]),
            &dev,
        );
        let out = decoder_input(Estimator::StraightThrough, z.clone(), e);
        let grads = (out * g.clone()).sum().backward();
        assert_eq!(host(z.grad(&grads).unwrap().into()), host(g));
    }

    /// Finite differences of <g, lambda R z> in z with lambda and R held at z0 agree with the
    /// autodiff gradient (the estimator's gradient is that of a linear map).
    #[test]
    fn finite_differences_of_the_frozen_map() {
        let dev = Device::flex().autodiff();
        let z0 = Tensor::<2>::random([1, 3], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let e = Tensor::<2>::random([1, 3], Distribution::Normal(0.0, 1.0), &dev);
        let g = Tensor::<2>::random([1, 3], Distribution::Normal(0.0, 1.0), &dev);
        let grads = (rotate_to(z0.clone(), e.clone()) * g.clone())
            .sum()
            .backward();
        let got = host(z0.grad(&grads).unwrap().into());
        // The frozen map at z0, applied to z0 + h e_j: linear, so the difference quotient is
        // exact up to rounding.
        let (zv, ev, gv) = (host(z0.clone().detach()), host(e), host(g));
        let apply = |z: &[f64]| -> f64 {
            let z0d: Vec<f64> = zv.iter().map(|&x| x as f64).collect();
            let ed: Vec<f64> = ev.iter().map(|&x| x as f64).collect();
            let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            let u: Vec<f64> = z0d.iter().map(|x| x / norm(&z0d)).collect();
            let q: Vec<f64> = ed.iter().map(|x| x / norm(&ed)).collect();
            let w: Vec<f64> = u.iter().zip(&q).map(|(a, b)| a + b).collect();
            let r: Vec<f64> = w.iter().map(|x| x / norm(&w)).collect();
            let lambda = norm(&ed) / norm(&z0d);
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
            let (rz, uz) = (dot(&r, z), dot(&u, z));
            (0..3)
                .map(|a| lambda * (z[a] - 2.0 * r[a] * rz + 2.0 * q[a] * uz) * gv[a] as f64)
                .sum()
        };
        let h = 1e-3;
        for j in 0..3 {
            let mut p: Vec<f64> = zv.iter().map(|&x| x as f64).collect();
            let mut m = p.clone();
            p[j] += h;
            m[j] -= h;
            let fd = (apply(&p) - apply(&m)) / (2.0 * h);
            assert!(
                (fd - got[j] as f64).abs() < 1e-3,
                "coordinate {j}: {fd} vs {}",
                got[j]
            );
        }
    }
}
