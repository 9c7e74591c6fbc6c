//! The one call into the `gemm` crate, checked: [`matmul`] takes its operands as [`Mat`] and
//! [`MatMut`], slices with strides, asserts that every matrix lies inside its slice, and only
//! then makes the unsafe call. The convolutions ([`super::conv`]) and the assignment kernels
//! ([`super::assign`]) both multiply through it.

/// Raises the gemm crate's threshold for packing the left operand in single-threaded calls from
/// 8 to 64 column blocks: in the convolutions the left operand is the weight matrix, already
/// column-major, and packing it again for every block of im2col rows cost about a tenth of a
/// forward convolution (measured: 409 -> 458 GFLOP/s on the CIFAR-10 model's 4x4 convolution).
/// A process-wide setting of the gemm crate; it changes no result, only whether a copy is made.
/// Called by the convolutions before their first GEMM (the assignment kernels do not call it).
pub(crate) fn tune_gemm() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| ::gemm::set_lhs_packing_threshold_single_thread(64));
}

/// Whether a `rows x cols` matrix at offset 0 with row stride `rs` and column stride `cs` lies
/// inside a slice of `len` elements. An empty matrix (no rows or no columns) touches nothing;
/// negative strides and index overflow count as outside.
fn covers(len: usize, rs: isize, cs: isize, rows: usize, cols: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let (Ok(rs), Ok(cs)) = (usize::try_from(rs), usize::try_from(cs)) else {
        return false;
    };
    (rows - 1)
        .checked_mul(rs)
        .zip((cols - 1).checked_mul(cs))
        .and_then(|(r, c)| r.checked_add(c))
        .is_some_and(|last| last < len)
}

/// A GEMM operand: a slice read as a matrix with a column stride `cs` and a row stride `rs`
/// (element `(i, j)` at `i·rs + j·cs`).
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    s: &'a [f32],
    cs: isize,
    rs: isize,
}

impl<'a> Mat<'a> {
    /// A row-major `[_, cols]` matrix.
    pub(crate) fn rows(s: &'a [f32], cols: usize) -> Self {
        Mat {
            s,
            cs: 1,
            rs: cols as isize,
        }
    }

    /// The transpose of a row-major `[_, cols]` matrix.
    pub(crate) fn rows_t(s: &'a [f32], cols: usize) -> Self {
        Mat {
            s,
            cs: cols as isize,
            rs: 1,
        }
    }

    /// The transpose of this matrix: the same elements, the strides swapped.
    pub(crate) fn t(self) -> Self {
        Mat {
            s: self.s,
            cs: self.rs,
            rs: self.cs,
        }
    }

    /// Whether a `rows x cols` matrix with these strides lies inside the slice.
    pub(crate) fn covers(&self, rows: usize, cols: usize) -> bool {
        covers(self.s.len(), self.rs, self.cs, rows, cols)
    }
}

/// A GEMM destination: a mutable slice read as a matrix, strides as in [`Mat`].
pub(crate) struct MatMut<'a> {
    s: &'a mut [f32],
    cs: isize,
    rs: isize,
}

impl<'a> MatMut<'a> {
    /// A row-major `[_, cols]` matrix.
    pub(crate) fn rows(s: &'a mut [f32], cols: usize) -> Self {
        MatMut {
            s,
            cs: 1,
            rs: cols as isize,
        }
    }

    /// The transpose of a row-major `[_, cols]` matrix.
    pub(crate) fn rows_t(s: &'a mut [f32], cols: usize) -> Self {
        MatMut {
            s,
            cs: cols as isize,
            rs: 1,
        }
    }

    /// Whether a `rows x cols` matrix with these strides lies inside the slice.
    pub(crate) fn covers(&self, rows: usize, cols: usize) -> bool {
        covers(self.s.len(), self.rs, self.cs, rows, cols)
    }
}

/// `dst[m, n] = (acc ? dst : 0) + lhs[m, k] · rhs[k, n]`, on this thread: the gemm crate's
/// `gemm` with `read_dst = acc`, `alpha = acc ? 1 : 0`, `beta = 1`, no conjugation and
/// `Parallelism::None`, after asserting that the three matrices lie inside their slices (panics
/// otherwise).
pub(crate) fn matmul(m: usize, n: usize, k: usize, dst: MatMut, acc: bool, lhs: Mat, rhs: Mat) {
    assert!(
        dst.covers(m, n) && lhs.covers(m, k) && rhs.covers(k, n),
        "GEMM operand outside its slice"
    );
    // SAFETY: dst (m x n), lhs (m x k) and rhs (k x n) lie inside their slices (asserted above,
    // with non-negative strides and no overflow); dst is borrowed mutably, so it overlaps
    // neither operand. The gemm crate touches nothing when m or n is 0 and reads no operand
    // when k is 0.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.s.as_mut_ptr(),
            dst.cs,
            dst.rs,
            acc,
            lhs.s.as_ptr(),
            lhs.cs,
            lhs.rs,
            rhs.s.as_ptr(),
            rhs.cs,
            rhs.rs,
            if acc { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            ::gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_checks_the_last_element() {
        let s = [0.0f32; 12];
        assert!(Mat::rows(&s, 4).covers(3, 4));
        assert!(!Mat::rows(&s, 4).covers(4, 4));
        assert!(Mat::rows_t(&s, 4).covers(4, 3));
        assert!(!Mat::rows_t(&s, 4).covers(4, 4));
        assert!(Mat::rows(&s, 4).t().covers(4, 3));
        assert!(
            Mat::rows(&[], 4).covers(0, 4),
            "an empty matrix reads nothing"
        );
        assert!(!covers(12, -1, 1, 2, 2), "negative stride");
        assert!(!covers(12, isize::MAX, 1, 3, 1), "overflow");
    }

    #[test]
    fn matmul_multiplies_and_accumulates() {
        // a [2, 3], b [3, 2] row-major; a · b = [[4, 5], [9, 11]].
        let a = [1.0f32, 0.0, 1.0, 2.0, 1.0, 2.0];
        let b = [1.0f32, 2.0, 1.0, 1.0, 3.0, 3.0];
        let mut d = [9.0f32; 4];
        matmul(
            2,
            2,
            3,
            MatMut::rows(&mut d, 2),
            false,
            Mat::rows(&a, 3),
            Mat::rows(&b, 2),
        );
        assert_eq!(d, [4.0, 5.0, 9.0, 11.0]);
        // dᵀ += bᵀ · aᵀ = (a · b)ᵀ, through transposed views: d doubles.
        let at = Mat::rows(&a, 3).t();
        let bt = Mat::rows(&b, 2).t();
        matmul(2, 2, 3, MatMut::rows_t(&mut d, 2), true, bt, at);
        assert_eq!(d, [8.0, 10.0, 18.0, 22.0]);
    }

    #[test]
    #[should_panic(expected = "GEMM operand outside its slice")]
    fn matmul_rejects_a_short_operand() {
        let (a, b, mut d) = ([1.0f32; 5], [1.0f32; 6], [0.0f32; 4]);
        matmul(
            2,
            2,
            3,
            MatMut::rows(&mut d, 2),
            false,
            Mat::rows(&a, 3),
            Mat::rows(&b, 2),
        );
    }
}
