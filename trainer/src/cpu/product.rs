//! Matrix products on the CPU backend, through the `gemm` crate as burn-flex computes them,
//! but straight into a buffer of their own: the linear layers' and the attention's (batches
//! of matrices). burn-flex 0.22 zero-fills each product's output and then copies it whole
//! into a second allocation (cubecl's `Bytes::from_bytes_vec` re-aligns every byte
//! vector), which cost about 5% of a CPU training step. A linear layer's bias is written
//! into the output first and the product added to it, so the bias costs no pass of its
//! own either. Products whose operands are bf16 values run on the CPU's bf16 instructions
//! where it has them (`bf16`: AMX or AVX512-BF16), and through `gemm` in f32 elsewhere.

#[cfg(target_arch = "x86_64")]
mod bf16;

#[cfg(target_arch = "x86_64")]
use bf16::Bf16Unit;
/// No bf16 instructions are used off x86-64.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy)]
enum Bf16Unit {}

use super::NarrowFormat;
use super::kernels::round_to;
use burn::backend::flex::FlexTensor;
use burn::tensor::{Shape, TensorData};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Products of at least this many multiply-adds are split across threads (burn-flex's
/// threshold); a batch of smaller ones is split by matrix.
const PARALLEL_MULTIPLY_ADDS: usize = 192 * 192 * 192;
/// Elements of the bias rows written per rayon task.
const TASK_ELEMENTS: usize = 1 << 16;

/// f32 matrices as `gemm` reads them, in place: a buffer, the shape of the batch, where
/// each matrix starts (the batch in row-major order; one matrix for a 2-D tensor), and
/// the row and column strides they share.
#[derive(Clone)]
pub(super) struct Matrices<'a> {
    storage: &'a [f32],
    batch: Vec<usize>,
    starts: Vec<usize>,
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

/// A row-major tensor of `shape` holding `values`.
pub(super) fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// `tensor` with no negative stride (a flipped tensor is copied), for [`Matrices::of`].
pub(super) fn unflipped(tensor: FlexTensor) -> FlexTensor {
    if tensor.layout().strides().iter().all(|&stride| stride >= 0) {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

impl<'a> Matrices<'a> {
    /// The f32 `tensor` of rank 2 or more in place, as matrices over its last two
    /// dimensions, whatever its strides, as long as none is negative (see [`unflipped`]).
    pub(super) fn of(tensor: &'a FlexTensor) -> Self {
        let layout = tensor.layout();
        let shape = layout.shape();
        let rank = shape.num_dims();
        assert!(
            rank >= 2,
            "matrix product: a tensor of rank 2 or more was expected, not {shape:?}"
        );
        let strides = layout.strides();
        assert!(
            strides.iter().all(|&stride| stride >= 0),
            "matrix product: negative strides"
        );
        let batch = shape[..rank - 2].to_vec();
        let mut starts = vec![layout.start_offset()];
        for (&size, &stride) in batch.iter().zip(&strides[..rank - 2]) {
            starts = starts
                .iter()
                .flat_map(|&start| (0..size).map(move |i| start + i * stride as usize))
                .collect();
        }
        let matrices = Self {
            storage: tensor.storage::<f32>(),
            batch,
            starts,
            rows: shape[rank - 2],
            cols: shape[rank - 1],
            row_stride: strides[rank - 2],
            col_stride: strides[rank - 1],
        };
        matrices.check_bounds();
        matrices
    }

    /// Panics unless the last element `gemm` reads of every matrix lies inside the buffer.
    fn check_bounds(&self) {
        if self.rows == 0 || self.cols == 0 {
            return;
        }
        let reach = ((self.rows - 1).checked_mul(self.row_stride as usize))
            .zip((self.cols - 1).checked_mul(self.col_stride as usize))
            .and_then(|(down, across)| down.checked_add(across));
        let inside = |start: &usize| {
            reach
                .and_then(|reach| reach.checked_add(*start))
                .is_some_and(|last| last < self.storage.len())
        };
        assert!(
            self.starts.iter().all(inside),
            "matrix product: strides out of bounds"
        );
    }

    /// Each matrix transposed, in place.
    pub(super) fn transposed(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// The first element of matrix `index`, for `gemm`.
    fn start(&self, index: usize) -> *const f32 {
        self.storage[self.starts[index]..].as_ptr()
    }
}

/// `lhs · rhs` matrix by matrix, plus `bias` on every row when it is given, as a fresh
/// row-major tensor of shape `[batch.., rows of lhs, columns of rhs]`. `operands` is the
/// format the product is computed in, if any, and the result is then rounded to it: bf16
/// products run on the CPU's bf16 instructions where it has them, which round the operands
/// as they pack them and the result as they store it; elsewhere the operands must be
/// values of the format already (see [`rounds_operands`]) and the result is rounded after
/// the product.
pub(super) fn product(
    lhs: &Matrices,
    rhs: &Matrices,
    bias: Option<&[f32]>,
    operands: Option<NarrowFormat>,
) -> FlexTensor {
    assert!(
        lhs.cols == rhs.rows && lhs.batch == rhs.batch,
        "matrix product: {:?} matrices of {}x{} and {:?} of {}x{} cannot be multiplied",
        lhs.batch,
        lhs.rows,
        lhs.cols,
        rhs.batch,
        rhs.rows,
        rhs.cols
    );
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let count = lhs.starts.len();
    let len = m
        .checked_mul(n)
        .and_then(|size| size.checked_mul(count))
        .expect("matrix product: the result is too large");
    let size = m * n;
    if let Some(bias) = bias {
        assert!(
            bias.len() == n,
            "linear layer: {} bias values for {n} outputs",
            bias.len()
        );
    }
    let shape = Shape::from([lhs.batch.as_slice(), &[m, n][..]].concat());
    let bias_rows = |bias: &[f32]| rows_of(bias, m * count);
    let unit = bf16_unit(operands);
    // The result as a tensor, rounded to the operands' format unless it was `rounded` as
    // it was stored (by the bf16 units).
    let result = |mut out: Vec<f32>, rounded: bool| {
        if let Some(format) = operands.filter(|_| !rounded) {
            round_to(&mut out, format);
        }
        tensor(out, shape.clone())
    };
    if len == 0 || k == 0 {
        return result(bias.map_or_else(|| vec![0.0; len], bias_rows), false);
    }
    let mut out = match bias {
        Some(bias) => bias_rows(bias),
        // `gemm` writes every element before reading any when `read_dst` is false, but its
        // vector kernels (one row or one column) take the output as a slice, and Apple's
        // AMX kernels read it: those get zeros.
        None if cfg!(target_arch = "x86_64") && m > 1 && n > 1 => Vec::with_capacity(len),
        None => vec![0.0; len],
    };
    // The whole buffer, the bias rows or zeros in it kept as they are.
    // SAFETY: f32 needs no drop, and the length is set again below.
    unsafe { out.set_len(0) };
    let dst = &mut out.spare_capacity_mut()[..len];
    let read_dst = bias.is_some();
    let large = m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MULTIPLY_ADDS;
    if count == 1 || large {
        for (index, matrix) in dst.chunks_mut(size).enumerate() {
            multiply_matrix(matrix, [lhs, rhs], index, read_dst, large, unit);
        }
    } else {
        dst.par_chunks_mut(size)
            .enumerate()
            .for_each(|(index, matrix)| {
                multiply_matrix(matrix, [lhs, rhs], index, read_dst, false, unit)
            });
    }
    // SAFETY: every one of the `len` elements was written by `gemm` or the bf16 kernels (or
    // before them, where they read them).
    unsafe { out.set_len(len) };
    result(out, unit.is_some())
}

/// The bf16 instructions products of operands of the format `operands` run on: bf16
/// products on the CPU's, where it has them.
fn bf16_unit(operands: Option<NarrowFormat>) -> Option<Bf16Unit> {
    #[cfg(target_arch = "x86_64")]
    let preferred = bf16::preferred_unit;
    #[cfg(not(target_arch = "x86_64"))]
    let preferred = || None;
    (operands == Some(NarrowFormat::Bf16))
        .then(preferred)
        .flatten()
}

/// Whether [`product`] rounds operands of the format `operands` itself, as it packs them
/// for the CPU's bf16 instructions; otherwise they must be values of the format already.
pub(super) fn rounds_operands(operands: Option<NarrowFormat>) -> bool {
    bf16_unit(operands).is_some()
}

/// Writes (or, with `read_dst`, adds) matrix `index` of `lhs · rhs` into `dst`, row-major:
/// on `unit` where given (see [`bf16_unit`]), rounded to bf16 as it is stored, through
/// `gemm` in f32 otherwise; split across threads where `parallel`.
fn multiply_matrix(
    dst: &mut [MaybeUninit<f32>],
    [lhs, rhs]: [&Matrices; 2],
    index: usize,
    read_dst: bool,
    parallel: bool,
    unit: Option<Bf16Unit>,
) {
    if let Some(unit) = unit {
        #[cfg(target_arch = "x86_64")]
        return bf16::multiply_into(dst, [lhs, rhs], index, read_dst, parallel, unit, true);
        #[cfg(not(target_arch = "x86_64"))]
        match unit {}
    }
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    multiply_into(dst, lhs, rhs, index, read_dst, parallelism);
}

/// Writes (or, with `read_dst`, adds) matrix `index` of `lhs · rhs` into `dst`, row-major.
fn multiply_into(
    dst: &mut [MaybeUninit<f32>],
    lhs: &Matrices,
    rhs: &Matrices,
    index: usize,
    read_dst: bool,
    parallelism: gemm::Parallelism,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    debug_assert_eq!(dst.len(), m * n);
    // SAFETY: `dst` holds exactly the m×n row-major result. `Matrices::of` checked that
    // every element the strides reach lies inside each operand's buffer, and `product`
    // that the sizes match. With `read_dst` the destination was initialised (bias rows);
    // without it `gemm` takes alpha as 0 and never reads the destination, and it writes
    // every one of its m×n elements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().cast::<f32>(),
            1,
            n as isize,
            read_dst,
            lhs.start(index),
            lhs.col_stride,
            lhs.row_stride,
            rhs.start(index),
            rhs.col_stride,
            rhs.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
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

    /// The elements of a tensor from [`product`].
    fn values(tensor: &FlexTensor) -> &[f32] {
        tensor.as_slice::<f32>().unwrap()
    }

    /// A `rows`×`cols` view of `storage` from `offset` with the given strides.
    fn view(
        storage: &[f32],
        offset: usize,
        (rows, cols): (usize, usize),
        (row_stride, col_stride): (isize, isize),
    ) -> Matrices<'_> {
        Matrices {
            storage,
            batch: Vec::new(),
            starts: vec![offset],
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// What `product` should give, one element at a time.
    fn naive(lhs: &Matrices, rhs: &Matrices, bias: Option<&[f32]>) -> Vec<f32> {
        let at = |m: &Matrices, index: usize, i: usize, j: usize| {
            m.storage[m.starts[index] + i * m.row_stride as usize + j * m.col_stride as usize]
        };
        let mut out = Vec::new();
        for index in 0..lhs.starts.len() {
            for i in 0..lhs.rows {
                for j in 0..rhs.cols {
                    let sum: f32 = (0..lhs.cols)
                        .map(|p| at(lhs, index, i, p) * at(rhs, index, p, j))
                        .sum();
                    out.push(sum + bias.map_or(0.0, |b| b[j]));
                }
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
        let one_row = view(&a, 0, (1, 30), (30, 1));
        let one_column = view(&b, 0, (30, 1), (20, 1));
        let twice = lhs.clone().transposed().transposed();
        for (what, lhs, rhs, bias) in [
            ("row-major", &lhs, &rhs, None),
            ("with a bias", &lhs, &rhs, Some(&bias[..])),
            ("transposed", &lhs, &rhs_t, Some(&bias[..])),
            ("strided rows", &every_other_row, &rhs, None),
            ("lhs transposed twice", &twice, &rhs, None),
            ("one row", &one_row, &rhs, None),
            ("one column", &lhs, &one_column, None),
        ] {
            let got = product(lhs, rhs, bias, None);
            assert_close(values(&got), &naive(lhs, rhs, bias), what);
        }
    }

    #[test]
    fn batches_of_transposed_matrices_are_multiplied_matrix_by_matrix() {
        use burn::backend::Flex;
        use burn::backend::ops::FloatTensorOps;
        // As the attention's scores: [batch, heads, queries, d] by the keys transposed.
        let query = tensor(numbers(2 * 3 * 7 * 5, 7), Shape::new([2, 3, 7, 5]));
        let key = tensor(numbers(2 * 3 * 6 * 5, 8), Shape::new([2, 3, 6, 5]));
        let key_t = Flex::float_swap_dims(key, 2, 3);
        let (lhs, rhs) = (Matrices::of(&query), Matrices::of(&key_t));
        assert_eq!((lhs.starts.len(), rhs.starts.len()), (6, 6));
        let got = product(&lhs, &rhs, None, None);
        assert_eq!(got.layout().shape(), &Shape::new([2, 3, 7, 6]));
        assert_close(values(&got), &naive(&lhs, &rhs, None), "batched");
        // A batch large enough to be split over rayon's threads.
        let many = tensor(numbers(64 * 9 * 4, 9), Shape::new([64, 9, 4]));
        let many_t = Flex::float_swap_dims(many.clone(), 1, 2);
        let (lhs, rhs) = (Matrices::of(&many), Matrices::of(&many_t));
        let got = product(&lhs, &rhs, None, None);
        assert_close(values(&got), &naive(&lhs, &rhs, None), "many");
    }

    #[test]
    fn large_products_are_split_across_threads_and_stay_exact() {
        let (m, k, n) = (210, 200, 190);
        assert!(m * k * n >= PARALLEL_MULTIPLY_ADDS);
        let (a, b, bias) = (numbers(m * k, 4), numbers(k * n, 5), numbers(n, 6));
        let lhs = view(&a, 0, (m, k), (k as isize, 1));
        let rhs = view(&b, 0, (k, n), (n as isize, 1));
        let got = product(&lhs, &rhs, Some(&bias), None);
        assert_close(values(&got), &naive(&lhs, &rhs, Some(&bias)), "large");
        assert_eq!(rows_of(&bias, m).len(), m * n);
    }

    #[test]
    fn empty_dimensions_give_zeros_or_the_bias() {
        let no_values: [f32; 0] = [];
        let lhs = view(&no_values, 0, (3, 0), (0, 1));
        let rhs = view(&no_values, 0, (0, 2), (2, 1));
        assert_eq!(values(&product(&lhs, &rhs, None, None)), &[0.0; 6]);
        assert_eq!(
            values(&product(&lhs, &rhs, Some(&[1.0, 2.0]), None)),
            &[1.0, 2.0, 1.0, 2.0, 1.0, 2.0]
        );
        let no_rows = view(&no_values, 0, (0, 4), (4, 1));
        let eight = [1.0; 8];
        let got = product(&no_rows, &view(&eight, 0, (4, 2), (2, 1)), None, None);
        assert!(values(&got).is_empty());
    }

    #[test]
    #[should_panic(expected = "cannot be multiplied")]
    fn mismatched_sizes_are_refused() {
        let six = [1.0; 6];
        let matrix = view(&six, 0, (2, 3), (3, 1));
        product(&matrix, &matrix, None, None);
    }
}
