//! bf16 products on AVX512-BF16's dot products: one packed 32x32 block, 8 rows at a time.

use super::{BLOCK, DEPTH, TILE};

/// Adds the 32x32 product of a packed left block and a packed right block (`depth`
/// blocks of 32 terms) to the output block at `out` (rows `row_floats` apart), or writes
/// it there where `add` is false, with AVX512-BF16's dot products: 8 rows at a time, their
/// 8x32 sums in 16 vector registers over the whole sum.
///
/// # Safety
/// As `Tiles::multiply_block`'s, and the CPU has AVX512-BF16.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn dot_block(
    out: *mut f32,
    row_floats: usize,
    add: bool,
    lhs: *const u16,
    rhs: *const u16,
    depth: usize,
) {
    use std::arch::x86_64::{
        __m512, __m512bh, _mm512_add_ps, _mm512_dpbf16_ps, _mm512_loadu_ps, _mm512_loadu_si512,
        _mm512_set1_epi32, _mm512_setzero_ps, _mm512_storeu_ps,
    };
    // Pairs of bf16 values: a row's two terms on the left, a column's on the right.
    let (lhs, rhs) = (lhs.cast::<u32>(), rhs.cast::<u32>());
    // Pairs in one packed block of 32 terms, and in one of its two right tiles.
    let (block_pairs, tile_pairs) = (BLOCK * DEPTH / 2, TILE / 2);
    for first in (0..BLOCK).step_by(8) {
        let row = |r: usize| out.wrapping_add((first + r) * row_floats);
        let mut sums: [[__m512; 2]; 8] = [[_mm512_setzero_ps(); 2]; 8];
        for block in 0..depth {
            let (lhs, rhs) = (
                lhs.wrapping_add(block * block_pairs),
                rhs.wrapping_add(block * block_pairs),
            );
            for pair in 0..DEPTH / 2 {
                // SAFETY: inside the packed blocks; the values are bf16 pairs, which the
                // dot product's operands are.
                let columns: [__m512bh; 2] = unsafe {
                    [0, tile_pairs].map(|tile| {
                        std::mem::transmute(_mm512_loadu_si512(rhs.add(tile + pair * 16).cast()))
                    })
                };
                for (r, sums) in sums.iter_mut().enumerate() {
                    // SAFETY: inside the packed block (row `first + r`, pair `pair`).
                    let terms = unsafe { *lhs.add((first + r) * DEPTH / 2 + pair) };
                    // SAFETY: 16 copies of a pair of bf16 values.
                    let terms: __m512bh =
                        unsafe { std::mem::transmute(_mm512_set1_epi32(terms as i32)) };
                    sums[0] = _mm512_dpbf16_ps(sums[0], terms, columns[0]);
                    sums[1] = _mm512_dpbf16_ps(sums[1], terms, columns[1]);
                }
            }
        }
        // The values held are added last, so that a large one (a bias) does not round
        // every term's addition.
        for (r, sums) in sums.iter().enumerate() {
            // SAFETY: the block's rows hold 32 values, initialised where `add`.
            unsafe {
                for (half, sum) in sums.iter().enumerate() {
                    let out = row(r).add(16 * half);
                    let held = if add {
                        _mm512_loadu_ps(out)
                    } else {
                        _mm512_setzero_ps()
                    };
                    _mm512_storeu_ps(out, _mm512_add_ps(held, *sum));
                }
            }
        }
    }
}
