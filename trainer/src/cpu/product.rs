//! The linear layers' matrix products, through the `gemm` crate as burn-flex computes
//! them, but straight into a buffer of their own. burn-flex 0.22 zero-fills each product's
//! output and then copies it whole into a second allocation (cubecl's
//! `Bytes::from_bytes_vec` re-aligns every byte vector), which cost about 5% of a CPU
//! training step. A layer's bias is written into the output first and the product added
//! to it, so the bias costs no pass of its own either.

use super::flex::tensor;
use burn::backend::flex::FlexTensor;
use burn::tensor::Shape;
use rayon::prelude::*;

/// Products of at least this many multiply-adds are split across threads (burn-flex's
/// threshold).
const PARALLEL_MULTIPLY_ADDS: usize = 192 * 192 * 192;
/// Elements of the bias rows written per rayon task.
const TASK_ELEMENTS: usize = 1 << 16;

/// A 2-D f32 matrix as `gemm` reads it: a buffer, where the first element is, and strides.
#[derive(Clone, Copy)]
pub(super) struct Matrix<'a> {
    storage: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

/// `tensor` with no negative stride (a flipped tensor is copied), for [`Matrix::of`].
pub(super) fn unflipped(tensor: FlexTensor) -> FlexTensor {
    if tensor.layout().strides().iter().all(|&stride| stride >= 0) {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

impl<'a> Matrix<'a> {
    /// The 2-D f32 `tensor` in place, whatever its strides, as long as none is negative
    /// (see [`unflipped`]).
    pub(super) fn of(tensor: &'a FlexTensor) -> Self {
        let layout = tensor.layout();
        let shape = layout.shape();
        assert!(
            shape.num_dims() == 2,
            "linear layer: a 2-D matrix was expected, not {shape:?}"
        );
        let strides = layout.strides();
        assert!(
            strides.iter().all(|&stride| stride >= 0),
            "linear layer: negative strides"
        );
        let matrix = Self {
            storage: tensor.storage::<f32>(),
            offset: layout.start_offset(),
            rows: shape[0],
            cols: shape[1],
            row_stride: strides[0],
            col_stride: strides[1],
        };
        if matrix.rows > 0 && matrix.cols > 0 {
            // The last element `gemm` reads lies inside the buffer.
            let last = ((matrix.rows - 1).checked_mul(matrix.row_stride as usize))
                .zip((matrix.cols - 1).checked_mul(matrix.col_stride as usize))
                .and_then(|(down, across)| down.checked_add(across)?.checked_add(matrix.offset));
            assert!(
                last.is_some_and(|last| last < matrix.storage.len()),
                "linear layer: strides out of bounds"
            );
        }
        matrix
    }

    /// The transpose, in place.
    pub(super) fn transposed(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// The first element, for `gemm`.
    fn start(&self) -> *const f32 {
        self.storage[self.offset..].as_ptr()
    }
}

/// `lhs · rhs`, plus `bias` on every row when it is given, as a fresh row-major tensor.
pub(super) fn product(lhs: Matrix, rhs: Matrix, bias: Option<&[f32]>) -> FlexTensor {
    assert!(
        lhs.cols == rhs.rows,
        "linear layer: a {}x{} and a {}x{} matrix cannot be multiplied",
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols
    );
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let len = m
        .checked_mul(n)
        .expect("linear layer: the product is too large");
    if let Some(bias) = bias {
        assert!(
            bias.len() == n,
            "linear layer: {} bias values for {n} outputs",
            bias.len()
        );
    }
    let shape = Shape::new([m, n]);
    if m == 0 || n == 0 || k == 0 {
        return tensor(
            bias.map_or_else(|| vec![0.0; len], |bias| bias.repeat(m)),
            shape,
        );
    }
    let mut out = match bias {
        Some(bias) => rows_of(bias, m),
        // `gemm` writes every element before reading any when `read_dst` is false, but its
        // vector kernels (one row or one column) take the output as a slice, and Apple's
        // AMX kernels read it: those get zeros.
        None if cfg!(target_arch = "x86_64") && m > 1 && n > 1 => Vec::with_capacity(len),
        None => vec![0.0; len],
    };
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MULTIPLY_ADDS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `out` has room for the m×n row-major result. `Matrix::of` checked that every
    // element the strides reach lies inside each operand's buffer, and the sizes match.
    // Where `out` is left uninitialised, `read_dst` is false, so `gemm` takes alpha as 0,
    // never reads the destination and writes every one of its m×n elements before the
    // length is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            bias.is_some(),
            lhs.start(),
            lhs.col_stride,
            lhs.row_stride,
            rhs.start(),
            rhs.col_stride,
            rhs.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
        out.set_len(len);
    }
    tensor(out, shape)
}

/// `rows` copies of `row`, one after the other, written in parallel.
fn rows_of(row: &[f32], rows: usize) -> Vec<f32> {
    let width = row.len();
    let mut out = Vec::with_capacity(rows * width);
    let rows_per_task = (TASK_ELEMENTS / width.max(1)).max(1);
    out.spare_capacity_mut()[..rows * width]
        .par_chunks_mut(rows_per_task * width)
        .for_each(|chunk| {
            for (slot, value) in chunk.iter_mut().zip(row.iter().cycle()) {
                slot.write(*value);
            }
        });
    // SAFETY: every one of the `rows * width` elements was written just above.
    unsafe { out.set_len(rows * width) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::flex::values;

    /// A `rows`×`cols` view of `storage` from `offset` with the given strides.
    fn view(
        storage: &[f32],
        offset: usize,
        (rows, cols): (usize, usize),
        (row_stride, col_stride): (isize, isize),
    ) -> Matrix<'_> {
        Matrix {
            storage,
            offset,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// What `product` should give, one element at a time.
    fn naive(lhs: Matrix, rhs: Matrix, bias: Option<&[f32]>) -> Vec<f32> {
        let at = |m: &Matrix, i: usize, j: usize| {
            m.storage[m.offset + i * m.row_stride as usize + j * m.col_stride as usize]
        };
        let mut out = Vec::new();
        for i in 0..lhs.rows {
            for j in 0..rhs.cols {
                let sum: f32 = (0..lhs.cols).map(|p| at(&lhs, i, p) * at(&rhs, p, j)).sum();
                out.push(sum + bias.map_or(0.0, |b| b[j]));
            }
        }
        out
    }

    fn numbers(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 500.0
                    - 1.0
            })
            .collect()
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        let worst = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{what}: off by {worst}");
    }

    #[test]
    fn strided_and_transposed_products_match_the_definition() {
        let a = numbers(40 * 30, 1);
        let b = numbers(30 * 20, 2);
        let bias = numbers(20, 3);
        // Row-major, then the same matrices read through transposed and strided views.
        let lhs = view(&a, 0, (40, 30), (30, 1));
        let rhs = view(&b, 0, (30, 20), (20, 1));
        let rhs_t = view(&b, 0, (20, 30), (1, 20)).transposed();
        let every_other_row = view(&a, 30, (20, 30), (60, 1));
        for (what, lhs, rhs, bias) in [
            ("row-major", lhs, rhs, None),
            ("with a bias", lhs, rhs, Some(&bias[..])),
            ("transposed", lhs, rhs_t, Some(&bias[..])),
            ("strided rows", every_other_row, rhs, None),
            (
                "lhs transposed twice",
                lhs.transposed().transposed(),
                rhs,
                None,
            ),
            ("one row", view(&a, 0, (1, 30), (30, 1)), rhs, None),
            ("one column", lhs, view(&b, 0, (30, 1), (20, 1)), None),
        ] {
            assert_close(
                values(&product(lhs, rhs, bias)),
                &naive(lhs, rhs, bias),
                what,
            );
        }
    }

    #[test]
    fn large_products_are_split_across_threads_and_stay_exact() {
        let (m, k, n) = (210, 200, 190);
        assert!(m * k * n >= PARALLEL_MULTIPLY_ADDS);
        let (a, b, bias) = (numbers(m * k, 4), numbers(k * n, 5), numbers(n, 6));
        let (lhs, rhs) = (
            view(&a, 0, (m, k), (k as isize, 1)),
            view(&b, 0, (k, n), (n as isize, 1)),
        );
        assert_close(
            values(&product(lhs, rhs, Some(&bias))),
            &naive(lhs, rhs, Some(&bias)),
            "large",
        );
        assert_eq!(rows_of(&bias, m).len(), m * n);
    }

    #[test]
    fn empty_dimensions_give_zeros_or_the_bias() {
        let no_values: [f32; 0] = [];
        let lhs = view(&no_values, 0, (3, 0), (0, 1));
        let rhs = view(&no_values, 0, (0, 2), (2, 1));
        assert_eq!(values(&product(lhs, rhs, None)), &[0.0; 6]);
        assert_eq!(
            values(&product(lhs, rhs, Some(&[1.0, 2.0]))),
            &[1.0, 2.0, 1.0, 2.0, 1.0, 2.0]
        );
        let no_rows = view(&no_values, 0, (0, 4), (4, 1));
        let four = [1.0; 8];
        assert!(values(&product(no_rows, view(&four, 0, (4, 2), (2, 1)), None)).is_empty());
    }

    #[test]
    #[should_panic(expected = "cannot be multiplied")]
    fn mismatched_sizes_are_refused() {
        let six = [1.0; 6];
        product(
            view(&six, 0, (2, 3), (3, 1)),
            view(&six, 0, (2, 3), (3, 1)),
            None,
        );
    }
}
