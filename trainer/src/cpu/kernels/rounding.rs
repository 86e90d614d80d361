//! Rounding f32 values to a narrower float format (bf16 or f16) in place, as a cast to it
//! and back would: the CPU's products in those formats are f32 products of rounded values.

use super::TASK_ELEMENTS;
use rayon::prelude::*;

/// A float format narrower than f32 that a matrix product can be computed in: its values
/// are kept in f32 here, rounded to the format (see [`round_to`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NarrowFormat {
    /// bfloat16: f32's 8 exponent bits, 7 mantissa bits.
    Bf16,
    /// IEEE half precision: 5 exponent bits (largest finite value 65504), 10 mantissa bits.
    F16,
}

/// `x` rounded to the nearest bf16 (ties to even), as f32: what a cast to bf16 and back
/// gives. Values past bf16's largest become infinite; NaN stays NaN.
#[inline(always)]
pub fn round_bf16(x: f32) -> f32 {
    let bits = x.to_bits();
    // Adding just under half of the dropped 16 bits' unit, plus the kept lowest bit,
    // rounds to nearest with ties to even; the carry may reach the exponent, as it should.
    let rounded = f32::from_bits(bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) & 0xFFFF_0000);
    if x.is_nan() { x } else { rounded }
}

/// The bits of `x` rounded to the nearest bf16 (ties to even), as bf16 is stored: the top
/// half of [`round_bf16`]'s f32.
#[inline(always)]
pub fn bf16_bits(x: f32) -> u16 {
    (round_bf16(x).to_bits() >> 16) as u16
}

/// `x` rounded to the nearest f16 (ties to even), as f32: what a cast to f16 and back gives.
/// Below f16's smallest normal value (2⁻¹⁴) the values are multiples of 2⁻²⁴; past its
/// largest (65504) they become infinite; NaN stays NaN.
#[inline(always)]
fn round_f16(x: f32) -> f32 {
    const SMALLEST_NORMAL: f32 = 6.103_515_6e-5;
    const SUBNORMAL_STEPS: f32 = 16_777_216.0;
    const LARGEST: f32 = 65_504.0;
    let bits = x.to_bits();
    let normal = f32::from_bits(bits.wrapping_add(0xFFF + ((bits >> 13) & 1)) & 0xFFFF_E000);
    let subnormal = (x * SUBNORMAL_STEPS).round_ties_even() * (1.0 / SUBNORMAL_STEPS);
    let rounded = if x.abs() < SMALLEST_NORMAL {
        subnormal
    } else {
        normal
    };
    let finite = if rounded.abs() > LARGEST {
        f32::INFINITY.copysign(x)
    } else {
        rounded
    };
    if x.is_nan() { x } else { finite }
}

multiversion! {
    /// Each value rounded to the nearest bf16, in place.
    fn round_bf16_chunk(values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = round_bf16(*v);
        }
    }
}

multiversion! {
    /// Each value rounded to the nearest f16, in place.
    fn round_f16_chunk(values: &mut [f32]) {
        for v in values.iter_mut() {
            *v = round_f16(*v);
        }
    }
}

/// `x` rounded to the nearest value of `format` (ties to even), as f32: what a cast to
/// `format` and back gives.
#[inline(always)]
pub fn round_value(x: f32, format: NarrowFormat) -> f32 {
    match format {
        NarrowFormat::Bf16 => round_bf16(x),
        NarrowFormat::F16 => round_f16(x),
    }
}

/// Every value rounded to the nearest value of `format` (ties to even), written over them
/// as f32: a cast to `format` and back, without a buffer of the narrow format.
pub fn round_to(values: &mut [f32], format: NarrowFormat) {
    values
        .par_chunks_mut(TASK_ELEMENTS)
        .for_each(|chunk| match format {
            NarrowFormat::Bf16 => round_bf16_chunk(chunk),
            NarrowFormat::F16 => round_f16_chunk(chunk),
        });
}
