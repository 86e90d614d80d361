//! The arithmetic of the fused CPU operations, on plain `f32` slices: exact GELU and its
//! slope, the attention softmax (scale and key bias included) and its backward pass,
//! LayerNorm (of a sum, for a residual connection) with its backward pass, dropout's keep
//! masks, and rounding to bf16 or f16 (in `rounding`). Their output buffers are filled by
//! the tasks part by part (`buffers`).
//!
//! Rows are spread over rayon's threads. Each row kernel is written as straight-line
//! arithmetic (no calls, no branches but selects) so the compiler vectorizes it, and on
//! x86-64 it is compiled a second time for AVX2 and picked at run time. `exp` and `erf` are
//! computed here for that reason: libm's are scalar calls.

use crate::rng::SeededRng;
use rayon::prelude::*;

/// Elements of work per rayon task; smaller tasks cost more in scheduling than they save.
const TASK_ELEMENTS: usize = 1 << 15;

/// Rows per rayon task for rows of `width` elements.
fn rows_per_task(width: usize) -> usize {
    (TASK_ELEMENTS / width.max(1)).max(1)
}

/// Elements per rayon task for rows of `width` elements: whole rows, and never 0 (an empty
/// tensor then has no task rather than a chunk size rayon refuses).
fn task_len(width: usize) -> usize {
    (rows_per_task(width) * width).max(1)
}

/// Defines a function whose body is compiled twice: for AVX2, taken where the CPU has it,
/// and as plain code otherwise. The body should be straight-line arithmetic over slices,
/// which the compiler vectorizes.
macro_rules! multiversion {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn wide($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU was just found to support AVX2.
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

mod buffers;
mod rounding;
use buffers::{copied, filled, slots, zeroed};
pub use rounding::{NarrowFormat, bf16_bits, round_bf16, round_to, round_value};

/// `e^x` in f32 to within 2 ulp, as arithmetic the compiler can vectorize (Cody–Waite
/// reduction to `[-ln2/2, ln2/2]`, then Cephes's degree-6 polynomial). Exactly 0 below
/// −87.3, where `e^x` leaves the normal floats; inputs are clamped at 88.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a call.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.3, 88.0);
    let n = (clamped * LOG2_E + ROUND) - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) << 23) as u32);
    if x < -87.3 { 0.0 } else { e * scale }
}

/// `(Φ(x), φ(x))`: the standard normal distribution function, `(1 + erf(x/√2)) / 2`, to
/// within 2·10⁻⁷ absolute (Abramowitz and Stegun 7.1.26 for `erfc` of `|x|/√2`, so `Φ`
/// never comes from subtracting nearly equal numbers), and the density, which shares its
/// `e^(−x²/2)`.
#[inline(always)]
fn normal_cdf_pdf(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let gauss = exp(-z * z);
    // erfc(z) for z >= 0.
    let tail = poly * gauss;
    let cdf = if x < 0.0 {
        0.5 * tail
    } else {
        1.0 - 0.5 * tail
    };
    (cdf, FRAC_1_SQRT_2PI * gauss)
}

multiversion! {
    /// GELU of one chunk, in place, and its slope `Φ(x) + x·φ(x)` into `slope` unless that
    /// is empty.
    fn gelu_chunk(values: &mut [f32], slope: &mut [f32]) {
        if slope.is_empty() {
            for y in values.iter_mut() {
                *y *= normal_cdf_pdf(*y).0;
            }
        } else {
            for (y, s) in values.iter_mut().zip(slope) {
                let x = *y;
                let (cdf, pdf) = normal_cdf_pdf(x);
                *s = cdf + x * pdf;
                *y = x * cdf;
            }
        }
    }
}

multiversion! {
    /// `values · factors`, element by element, over `values`.
    fn multiply_chunk(values: &mut [f32], factors: &[f32]) {
        for (v, &f) in values.iter_mut().zip(factors) {
            *v *= f;
        }
    }
}

/// Exact GELU, `x·Φ(x)`, of every element, written over them.
pub fn gelu(values: &mut [f32]) {
    values
        .par_chunks_mut(TASK_ELEMENTS)
        .for_each(|values| gelu_chunk(values, &mut []));
}

/// [`gelu`], and the slope GELU's backward pass multiplies by, `Φ(x) + x·φ(x)`, computed
/// with it (the two share `Φ` and the exponential in `φ`).
pub fn gelu_with_slope(values: &mut [f32]) -> Vec<f32> {
    let len = values.len();
    let mut slope = Vec::with_capacity(len);
    values
        .par_chunks_mut(TASK_ELEMENTS)
        .zip(slots(&mut slope, len).par_chunks_mut(TASK_ELEMENTS))
        .for_each(|(values, slope)| gelu_chunk(values, zeroed(slope)));
    // SAFETY: the chunks of `slope` cover its `len` slots, each zeroed above.
    unsafe { filled(slope, len) }
}

/// `values · factors`, element by element, written over `values`: the gradient through
/// GELU from its slope.
pub fn multiply(values: &mut [f32], factors: &[f32]) {
    values
        .par_chunks_mut(TASK_ELEMENTS)
        .zip(factors.par_chunks(TASK_ELEMENTS))
        .for_each(|(values, factors)| multiply_chunk(values, factors));
}

/// Sum of a slice, in eight independent lanes so the compiler can vectorize it.
#[inline(always)]
fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// Dot product of two slices, in eight lanes.
#[inline(always)]
fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in a8.zip(b8) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(ca).zip(cb) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// Largest element, in eight lanes.
#[inline(always)]
fn lane_max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(v);
        }
    }
    lanes
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

multiversion! {
    /// Softmax of rows sharing one key bias, in place.
    fn softmax_rows(scores: &mut [f32], bias: &[f32], scale: f32) {
        let width = bias.len();
        for row in scores.chunks_exact_mut(width) {
            for (y, &b) in row.iter_mut().zip(bias) {
                *y = *y * scale + b;
            }
            let max = lane_max(row);
            for y in row.iter_mut() {
                *y = exp(*y - max);
            }
            let inverse = 1.0 / lane_sum(row);
            for y in row.iter_mut() {
                *y *= inverse;
            }
        }
    }
}

multiversion! {
    /// Softmax's backward pass over whole rows.
    fn softmax_backward_rows(probabilities: &[f32], grad: &mut [f32], width: usize, scale: f32) {
        for (y, g) in probabilities
            .chunks_exact(width)
            .zip(grad.chunks_exact_mut(width))
        {
            let inner = lane_dot(y, g);
            for (g, &y) in g.iter_mut().zip(y) {
                *g = scale * y * (*g - inner);
            }
        }
    }
}

/// Softmax over the last dimension of `scale·scores + bias`, written over `scores`, which
/// holds `batch` blocks of rows of `bias.len() / batch` elements; every row of block `b`
/// adds row `b` of `bias` (the attention's key padding bias).
pub fn softmax(scores: &mut [f32], bias: &[f32], batch: usize, scale: f32) {
    let width = bias.len() / batch.max(1);
    let task = task_len(width);
    let block = (scores.len() / batch.max(1)).max(1);
    scores
        .par_chunks_mut(block)
        .zip(bias.par_chunks(width.max(1)))
        .for_each(|(scores, bias)| {
            scores
                .par_chunks_mut(task)
                .for_each(|scores| softmax_rows(scores, bias, scale));
        });
}

/// The gradient through [`softmax`] to the scores, `scale · y · (grad − Σ grad·y)` per row
/// of `width`, from its output `probabilities`; written over `grad`.
pub fn softmax_backward(probabilities: &[f32], grad: &mut [f32], width: usize, scale: f32) {
    let task = task_len(width);
    grad.par_chunks_mut(task)
        .zip(probabilities.par_chunks(task))
        .for_each(|(g, y)| softmax_backward_rows(y, g, width, scale));
}

/// What LayerNorm's forward pass keeps for its backward pass.
#[derive(Clone, Debug)]
pub struct NormalizedRows {
    /// `(x − mean) / σ` of every row.
    pub normalized: Vec<f32>,
    /// `1 / σ` of every row, `σ = √(var + ε)`.
    pub inverse_std: Vec<f32>,
}

multiversion! {
    /// LayerNorm of whole rows of `terms.0`, or of `terms.0 + terms.1` where there is a
    /// residual.
    fn layer_norm_rows(
        terms: (&[f32], Option<&[f32]>),
        gamma: &[f32],
        beta: &[f32],
        epsilon: f32,
        out: &mut [f32],
        normalized: &mut [f32],
        inverse_std: &mut [f32],
    ) {
        let width = gamma.len();
        let (input, residual) = terms;
        let rows = input
            .chunks_exact(width)
            .zip(out.chunks_exact_mut(width))
            .zip(normalized.chunks_exact_mut(width))
            .zip(inverse_std.iter_mut())
            .enumerate();
        for (row, (((x, y), xhat), rstd)) in rows {
            match residual {
                Some(residual) => {
                    let r = &residual[row * width..(row + 1) * width];
                    for ((d, &v), &r) in xhat.iter_mut().zip(x).zip(r) {
                        *d = v + r;
                    }
                }
                None => xhat.copy_from_slice(x),
            }
            let mean = lane_sum(xhat) / width as f32;
            for d in xhat.iter_mut() {
                *d -= mean;
            }
            let variance = lane_dot(xhat, xhat) / width as f32;
            *rstd = 1.0 / (variance + epsilon).sqrt();
            for (((y, d), &g), &b) in y.iter_mut().zip(xhat.iter_mut()).zip(gamma).zip(beta) {
                *d *= *rstd;
                *y = *d * g + b;
            }
        }
    }
}

/// LayerNorm over rows of `gamma.len()` elements of `x`, the input plus `residual` where
/// there is one (of the input's length): `(x − mean)/√(var + ε) · γ + β`, the variance
/// biased, as burn and PyTorch compute it. Returns the output and what the backward pass
/// needs.
pub fn layer_norm(
    input: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
) -> (Vec<f32>, NormalizedRows) {
    let width = gamma.len();
    assert!(
        residual.is_none_or(|r| r.len() == input.len()),
        "LayerNorm: the residual's length differs from the input's"
    );
    let len = input.len();
    let (mut out, mut normalized) = (Vec::with_capacity(len), Vec::with_capacity(len));
    let mut inverse_std = vec![0.0; len / width.max(1)];
    let rows = rows_per_task(width);
    let task = (rows * width).max(1);
    slots(&mut out, len)
        .par_chunks_mut(task)
        .zip(slots(&mut normalized, len).par_chunks_mut(task))
        .zip(inverse_std.par_chunks_mut(rows))
        .zip(input.par_chunks(task))
        .enumerate()
        .for_each(|(index, (((out, xhat), rstd), x))| {
            let residual = residual.map(|r| &r[index * task..index * task + x.len()]);
            let (out, xhat) = (zeroed(out), zeroed(xhat));
            layer_norm_rows((x, residual), gamma, beta, epsilon, out, xhat, rstd)
        });
    // SAFETY: the chunks cover the `len` slots of both buffers, each zeroed above.
    let (out, normalized) = unsafe { (filled(out, len), filled(normalized, len)) };
    (
        out,
        NormalizedRows {
            normalized,
            inverse_std,
        },
    )
}

multiversion! {
    /// LayerNorm's backward pass over whole rows: the input's gradient over `grad`, the
    /// parameters' added to `dgamma` and `dbeta`.
    fn layer_norm_backward_rows(
        grad: &mut [f32],
        normalized: &[f32],
        inverse_std: &[f32],
        gamma: &[f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32],
    ) {
        let width = gamma.len();
        let rows = grad
            .chunks_exact_mut(width)
            .zip(normalized.chunks_exact(width))
            .zip(inverse_std);
        for ((g, xhat), &rstd) in rows {
            for ((((dg, db), g), &x), &gam) in dgamma
                .iter_mut()
                .zip(dbeta.iter_mut())
                .zip(g.iter_mut())
                .zip(xhat)
                .zip(gamma)
            {
                *dg += *g * x;
                *db += *g;
                *g *= gam;
            }
            let mean_g = lane_sum(g) / width as f32;
            let mean_gx = lane_dot(g, xhat) / width as f32;
            for (g, &x) in g.iter_mut().zip(xhat) {
                *g = rstd * (*g - mean_g - x * mean_gx);
            }
        }
    }
}

/// The gradients of [`layer_norm`]: the input's written over `grad`, then γ's and β's
/// returned.
pub fn layer_norm_backward(
    grad: &mut [f32],
    saved: &NormalizedRows,
    gamma: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let width = gamma.len();
    let rows = rows_per_task(width);
    grad.par_chunks_mut((rows * width).max(1))
        .zip(saved.normalized.par_chunks((rows * width).max(1)))
        .zip(saved.inverse_std.par_chunks(rows))
        .map(|((g, xhat), rstd)| {
            let mut dgamma = vec![0.0; width];
            let mut dbeta = vec![0.0; width];
            layer_norm_backward_rows(g, xhat, rstd, gamma, &mut dgamma, &mut dbeta);
            (dgamma, dbeta)
        })
        .reduce(
            || (vec![0.0; width], vec![0.0; width]),
            |(mut ga, mut ba), (gb, bb)| {
                add_assign(&mut ga, &gb);
                add_assign(&mut ba, &bb);
                (ga, ba)
            },
        )
}

/// The sum of the rows of `rows` (rows of `width` elements): a linear layer's bias gradient.
/// With a format `rounded_to`, each value is rounded to it as it is read: the same sums as
/// of a rounded copy of `rows`.
pub fn sum_rows(rows: &[f32], width: usize, rounded_to: Option<NarrowFormat>) -> Vec<f32> {
    rows.par_chunks(task_len(width))
        .map(|chunk| {
            let mut sums = vec![0.0f32; width];
            for row in chunk.chunks_exact(width) {
                match rounded_to {
                    None => add_assign(&mut sums, row),
                    Some(format) => sums
                        .iter_mut()
                        .zip(row)
                        .for_each(|(s, &v)| *s += round_value(v, format)),
                }
            }
            sums
        })
        .reduce(
            || vec![0.0; width],
            |mut a, b| {
                add_assign(&mut a, &b);
                a
            },
        )
}

/// `into += from`, element by element.
fn add_assign(into: &mut [f32], from: &[f32]) {
    into.iter_mut().zip(from).for_each(|(a, b)| *a += b);
}

/// Elements per stream of a dropout mask: each chunk of this many elements draws its keep
/// decisions from a generator of its own, so masks are filled in parallel and do not depend
/// on the number of threads. A multiple of 64, so a chunk is whole words of [`KeepBits`].
const MASK_CHUNK: usize = 1 << 14;

/// A dropout mask, fixed by a seed: which elements are kept (each with probability `keep`,
/// from 32 random bits below `keep·2³²`, off by at most 2⁻³²) and the scale `1/keep` the
/// kept ones are multiplied by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutMask {
    seed: u64,
    threshold: u64,
    scale: f32,
}

/// One keep bit per element of a dropout's input, 64 to a word, the lowest bit first.
pub type KeepBits = Vec<u64>;

impl DropoutMask {
    /// The mask that keeps each element with probability `keep` (in `(0, 1]`) by `seed`.
    pub fn new(seed: u64, keep: f64) -> Self {
        Self {
            seed,
            threshold: (keep * 4_294_967_296.0).round().min(u32::MAX as f64) as u64,
            scale: (1.0 / keep) as f32,
        }
    }

    /// The mask's keep bits for `len` elements.
    pub fn bits(&self, len: usize) -> KeepBits {
        let mut bits = vec![0u64; len.div_ceil(64)];
        bits.par_chunks_mut(MASK_CHUNK / 64)
            .enumerate()
            .for_each(|(chunk, words)| {
                let stream = self.seed ^ (chunk as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
                let mut rng = SeededRng::new(stream);
                for word in words {
                    // Each draw decides two elements: the low half the first, the high half
                    // the second.
                    for pair in 0..32 {
                        let draw = rng.next_u64();
                        let first = u64::from(draw & 0xFFFF_FFFF < self.threshold);
                        let second = u64::from(draw >> 32 < self.threshold);
                        *word |= (first | second << 1) << (2 * pair);
                    }
                }
            });
        // Bits past the last element stay, unused; clear them so equal masks compare equal.
        if let Some(last) = bits.last_mut().filter(|_| !len.is_multiple_of(64)) {
            *last &= (1u64 << (len % 64)) - 1;
        }
        bits
    }

    /// The mask as `len` factors, `1/keep` where kept and 0 where dropped.
    pub fn factors(&self, len: usize) -> Vec<f32> {
        let mut factors = vec![1.0f32; len];
        self.apply(&self.bits(len), &mut factors);
        factors
    }

    /// `input` times the mask whose bits are `bits`, as [`DropoutMask::apply`], into a new
    /// buffer.
    pub fn applied(&self, bits: &[u64], input: &[f32]) -> Vec<f32> {
        let len = input.len();
        let mut out = Vec::with_capacity(len);
        slots(&mut out, len)
            .par_chunks_mut(MASK_CHUNK)
            .zip(input.par_chunks(MASK_CHUNK))
            .zip(bits.par_chunks(MASK_CHUNK / 64))
            .for_each(|((out, input), bits)| {
                apply_keep_bits(copied(out, input), bits, self.scale);
            });
        // SAFETY: the chunks cover the `len` slots, each written by `copied` above.
        unsafe { filled(out, len) }
    }

    /// Multiplies `values` by the mask whose bits are `bits` (from [`DropoutMask::bits`]
    /// for `values.len()` elements), in place: kept elements by `1/keep`, dropped ones by 0.
    pub fn apply(&self, bits: &[u64], values: &mut [f32]) {
        values
            .par_chunks_mut(MASK_CHUNK)
            .zip(bits.par_chunks(MASK_CHUNK / 64))
            .for_each(|(values, bits)| apply_keep_bits(values, bits, self.scale));
    }
}

multiversion! {
    /// `values` times `scale` where their bit in `bits` is set and times 0 elsewhere.
    fn apply_keep_bits(values: &mut [f32], bits: &[u64], scale: f32) {
        for (values, &word) in values.chunks_mut(64).zip(bits) {
            for (bit, value) in values.iter_mut().enumerate() {
                // A product, not a select, so dropped elements are what `x · 0` gives.
                let factor = if word >> bit & 1 == 1 { scale } else { 0.0 };
                *value *= factor;
            }
        }
    }
}
