//! bf16 matrix products on the CPU's bf16 instructions: the operands rounded to bf16 as
//! they are packed, their products summed in f32, as a GPU's tensor cores compute a bf16
//! product. Two kinds of CPU have such instructions:
//! - AMX, the tile unit of Intel's Xeons since Sapphire Rapids: each tile product
//!   (`tdpbf16ps`) takes 16x32 by 32x16 bf16 values to 16x16 f32 sums;
//! - AVX512-BF16 (AMD's Zen 4 and 5, Intel's Cooper Lake and later Xeons): each dot
//!   product (`vdpbf16ps`) adds 16 sums of two products to 16 f32 sums.
//!
//! Both treat bf16 subnormals as zero; nothing else differs from f32 products of the
//! rounded values but the order of the sums. Each output block of 32x32 is summed whole,
//! in tile registers or in vector registers 8 rows at a time. Both sides are packed first,
//! once, in the layout both instructions read; each task then computes 4x4 output blocks,
//! whose panels of the packed sides stay in its core's cache.

mod amx;
mod avx512;

use super::Matrices;
use crate::cpu::kernels::{bf16_bits, round_bf16};
use amx::{Tiles, enable_amx};
use avx512::dot_block;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// Rows and columns of an output block: two by two tiles of 16x16 f32 sums.
const BLOCK: usize = 32;
/// Terms of the sum that one tile product takes: 32 bf16 values in a tile row (64 bytes).
const DEPTH: usize = 32;
/// bf16 values in one tile: 16 rows of 32.
const TILE: usize = 16 * DEPTH;

/// The CPU's bf16 instructions that products run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Bf16Unit {
    /// AMX's tiles.
    Amx,
    /// AVX512-BF16's dot products.
    Avx512,
}

/// Which of the CPU's bf16 instructions products run on, if any: AMX where the process
/// may use it. Asked once. `JIGSAW_CPU_BF16=off` runs the products in f32 instead, and
/// `JIGSAW_CPU_BF16=avx512` on AVX512-BF16, to compare them in one build. AVX512-BF16 is
/// not the default: on a Xeon with both, its products ran at 0.55x the f32 products of
/// `gemm` (190 against 340 GFLOP/s on two cores, AMX at 700–1,000), and on AMD's CPUs,
/// whose bf16 dot products may be faster than their f32 ones, it has not been measured.
pub(super) fn preferred_unit() -> Option<Bf16Unit> {
    static UNIT: OnceLock<Option<Bf16Unit>> = OnceLock::new();
    *UNIT.get_or_init(|| {
        let unit = match std::env::var("JIGSAW_CPU_BF16").as_deref() {
            Ok("off") => return None,
            Ok("avx512") => Bf16Unit::Avx512,
            _ => Bf16Unit::Amx,
        };
        has(unit).then_some(unit)
    })
}

/// Whether the CPU has `unit` and the process may use it.
fn has(unit: Bf16Unit) -> bool {
    static AMX: OnceLock<bool> = OnceLock::new();
    // The packing is compiled for AVX-512BW, which every CPU with either unit has.
    let packing = is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vl");
    packing
        && match unit {
            Bf16Unit::Amx => *AMX.get_or_init(enable_amx),
            Bf16Unit::Avx512 => is_x86_feature_detected!("avx512bf16"),
        }
}

/// Writes (or, with `add`, adds) matrix `index` of `lhs · rhs` into `dst` (row-major), its
/// operands rounded to bf16 and the products summed in f32 on `unit`, each result rounded
/// to bf16 as it is stored where `round`, split across threads where `parallel`. Only call
/// with a unit the CPU has (as [`preferred_unit`] names), matching sizes and `dst` of rows
/// of `lhs` times columns of `rhs` elements, initialised where `add`.
pub(super) fn multiply_into(
    dst: &mut [MaybeUninit<f32>],
    [lhs, rhs]: [&Matrices; 2],
    index: usize,
    add: bool,
    parallel: bool,
    unit: Bf16Unit,
    round: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert!(
        has(unit) && lhs.cols == rhs.rows && dst.len() == m * n && k > 0,
        "bf16 product: {unit:?} unavailable or mismatched sizes"
    );
    if m == 0 || n == 0 {
        return;
    }
    let depth = k.div_ceil(DEPTH);
    // Each side's packed panel of 32 rows or columns: bf16 values on the left, pairs on
    // the right.
    let (lhs_panel, rhs_panel) = (depth * BLOCK * DEPTH, depth * BLOCK * DEPTH / 2);
    let (lhs, rhs) = (
        pack_lhs(lhs, index, depth, parallel),
        pack_rhs(rhs, index, depth, parallel),
    );
    let (row_blocks, col_blocks) = (m.div_ceil(BLOCK), n.div_ceil(BLOCK));
    let col_groups = col_blocks.div_ceil(GROUP);
    let out = Output {
        values: dst.as_mut_ptr().cast::<f32>(),
        rows: m,
        cols: n,
        add,
        round,
    };
    let group = |group: usize| {
        let (row_group, col_group) = (group / col_groups, group % col_groups);
        let tiles = (unit == Bf16Unit::Amx).then(Tiles::configure);
        let mut edge = Edge([0.0; BLOCK * BLOCK]);
        for col_block in col_group * GROUP..((col_group + 1) * GROUP).min(col_blocks) {
            let rhs = &rhs[col_block * rhs_panel..][..rhs_panel];
            for row_block in row_group * GROUP..((row_group + 1) * GROUP).min(row_blocks) {
                let lhs = &lhs[row_block * lhs_panel..][..lhs_panel];
                // SAFETY: each group writes output blocks of its own, and the panels hold
                // `depth` packed blocks each.
                unsafe {
                    out.multiply(
                        tiles.as_ref(),
                        &mut edge,
                        [row_block, col_block],
                        lhs,
                        rhs,
                        depth,
                    )
                };
            }
        }
    };
    let groups = row_blocks.div_ceil(GROUP) * col_groups;
    if parallel {
        (0..groups).into_par_iter().for_each(group);
    } else {
        (0..groups).for_each(group);
    }
}

/// Output blocks a task computes, on each side: 4 by 4 blocks, whose packed panels stay in
/// the core's cache while it goes over them.
const GROUP: usize = 4;

/// The row-major result the tasks write their blocks into, shared between them.
struct Output {
    values: *mut f32,
    rows: usize,
    cols: usize,
    /// Whether the products are added to the values there (initialised) or written.
    add: bool,
    /// Whether each result is rounded to bf16 as its block is stored.
    round: bool,
}

// SAFETY: the tasks sharing an `Output` write disjoint blocks of it.
unsafe impl Sync for Output {}

impl Output {
    /// Computes output block `[row_block, col_block]` (32x32, less at the edges) from the
    /// packed panels of its rows and columns, on `tiles` where given (AMX), with
    /// AVX512-BF16's dot products otherwise.
    ///
    /// # Safety
    /// No other thread touches this block meanwhile, `lhs` and `rhs` hold `depth` packed
    /// blocks each, and the CPU has AVX512-BF16 where `tiles` is `None`.
    unsafe fn multiply(
        &self,
        tiles: Option<&Tiles>,
        edge: &mut Edge,
        [row_block, col_block]: [usize; 2],
        lhs: &[u16],
        rhs: &[u32],
        depth: usize,
    ) {
        let (row, col) = (row_block * BLOCK, col_block * BLOCK);
        let (rows, cols) = (BLOCK.min(self.rows - row), BLOCK.min(self.cols - col));
        let corner = self.values.wrapping_add(row * self.cols + col);
        let (lhs, rhs) = (lhs.as_ptr(), rhs.as_ptr().cast::<u16>());
        let block = |out: *mut f32, row_floats: usize, add: bool| match tiles {
            // SAFETY: as `multiply_block` and `dot_block` need: the caller's promises, and
            // the block at `out` below.
            Some(tiles) => unsafe {
                tiles.multiply_block(out, row_floats * 4, add, lhs, rhs, depth)
            },
            None => unsafe { dot_block(out, row_floats, add, lhs, rhs, depth) },
        };
        if rows == BLOCK && cols == BLOCK {
            // The whole 32x32 block from `corner`, rows `cols` apart, lies inside the
            // result (initialised where `add`).
            block(corner, self.cols, self.add);
            if self.round {
                for row in 0..BLOCK {
                    // SAFETY: the block's rows lie inside the result, written just above;
                    // the CPU has AVX-512 (see `has`).
                    unsafe { round_row(corner.add(row * self.cols)) };
                }
            }
            return;
        }
        // A block at the right or lower edge is computed in a block of its own.
        for (r, edge_row) in edge.0.chunks_exact_mut(BLOCK).take(rows).enumerate() {
            for (c, e) in edge_row[..cols].iter_mut().enumerate() {
                // SAFETY: inside the result, initialised where `add`.
                *e = if self.add {
                    unsafe { *corner.add(r * self.cols + c) }
                } else {
                    0.0
                };
            }
        }
        // `edge` is a whole 32x32 block, every value initialised.
        block(edge.0.as_mut_ptr(), BLOCK, true);
        for (r, edge_row) in edge.0.chunks_exact(BLOCK).take(rows).enumerate() {
            for (c, &e) in edge_row[..cols].iter().enumerate() {
                // SAFETY: inside the result.
                unsafe {
                    *corner.add(r * self.cols + c) = if self.round { round_bf16(e) } else { e }
                };
            }
        }
    }
}

/// A 32x32 output block at an edge of the result, aligned for the tiles' stores.
#[repr(C, align(64))]
struct Edge([f32; BLOCK * BLOCK]);

/// Matrix `index` of `lhs` rounded to bf16, as the tile loads read it: for each 32 rows,
/// for each 32 terms of the sum, 32 rows of 32 values; zeros past the matrix's rows and
/// columns. The 32 rows at a time are packed in parallel where `parallel`.
fn pack_lhs(lhs: &Matrices, index: usize, depth: usize, parallel: bool) -> Vec<u16> {
    let (m, k) = (lhs.rows, lhs.cols);
    let block_len = depth * BLOCK * DEPTH;
    let (row_stride, col_stride) = (lhs.row_stride as usize, lhs.col_stride as usize);
    let pack_block = |(block, packed): (usize, &mut [MaybeUninit<u16>])| {
        let first = block * BLOCK;
        let rows = BLOCK.min(m - first);
        let origin = lhs.starts[index] + first * row_stride;
        if col_stride == 1 {
            for row in 0..rows {
                let values = &lhs.storage[origin + row * row_stride..][..k];
                for (block, terms) in values.chunks(DEPTH).enumerate() {
                    let out = &mut packed[block * BLOCK * DEPTH + row * DEPTH..][..terms.len()];
                    // SAFETY: `has` checked that the CPU has AVX-512BW.
                    unsafe { round_into(out, terms) };
                }
            }
        } else if row_stride == 1 {
            // A transposed matrix (`xᵀ` of a weight's gradient): two terms of the sum are two
            // stretches of the buffer, paired as the right side's are, then transposed.
            let zeros = [0.0; BLOCK];
            let mut pairs = [[MaybeUninit::new(0u32); BLOCK]; DEPTH / 2];
            let stretch = |term: usize| &lhs.storage[origin + term * col_stride..][..rows];
            for (block, out) in packed.chunks_exact_mut(BLOCK * DEPTH).enumerate() {
                for (pair, paired) in pairs.iter_mut().enumerate() {
                    let term = block * DEPTH + 2 * pair;
                    let even = if term < k {
                        stretch(term)
                    } else {
                        &zeros[..rows]
                    };
                    let odd = if term + 1 < k {
                        stretch(term + 1)
                    } else {
                        &zeros[..rows]
                    };
                    // SAFETY: `has` checked that the CPU has AVX-512BW.
                    unsafe { round_pairs_into(&mut paired[..rows], even, odd) };
                }
                for (row, out) in out.chunks_exact_mut(DEPTH).take(rows).enumerate() {
                    for (two, paired) in out.chunks_exact_mut(2).zip(&pairs) {
                        // SAFETY: initialised (as zeros, then each `rows` pairs just above).
                        let paired = unsafe { paired[row].assume_init() };
                        two[0].write(paired as u16);
                        two[1].write((paired >> 16) as u16);
                    }
                }
            }
        } else {
            for term in 0..k {
                let column = &lhs.storage[origin + term * col_stride..];
                let out = &mut packed[(term / DEPTH) * BLOCK * DEPTH + term % DEPTH..];
                for row in 0..rows {
                    out[row * DEPTH].write(bf16_bits(column[row * row_stride]));
                }
            }
        }
    };
    packed_by_blocks([m, k], block_len, parallel, pack_block)
}

/// Matrix `index` of `rhs` rounded to bf16, as the tile loads read it: for each 32
/// columns, for each 32 terms of the sum, two tiles (columns 0–15, 16–31) whose row `p`
/// holds, column by column, the values of terms `2p` and `2p + 1` side by side (one `u32`
/// each pair, the even term in its low half); zeros past the matrix's rows and columns.
/// The 32 columns at a time are packed in parallel where `parallel`.
fn pack_rhs(rhs: &Matrices, index: usize, depth: usize, parallel: bool) -> Vec<u32> {
    let (k, n) = (rhs.rows, rhs.cols);
    // Pairs in a block of 32 terms by 32 columns, and in one tile.
    let (block_pairs, tile_pairs) = (BLOCK * DEPTH / 2, TILE / 2);
    let panel = depth * block_pairs;
    let (row_stride, col_stride) = (rhs.row_stride as usize, rhs.col_stride as usize);
    let pack_panel = |(block, packed): (usize, &mut [MaybeUninit<u32>])| {
        let first = block * BLOCK;
        let cols = BLOCK.min(n - first);
        let origin = rhs.starts[index] + first * col_stride;
        // Where the tile row of the pair of terms `term` (even) and `term + 1` starts.
        let pair_row = |term: usize| (term / DEPTH) * block_pairs + (term % DEPTH / 2) * 16;
        if col_stride == 1 {
            let row = |term: usize| &rhs.storage[origin + term * row_stride..][..cols];
            let zeros = [0.0; BLOCK];
            for term in (0..k).step_by(2) {
                let even = row(term);
                let odd = if term + 1 < k {
                    row(term + 1)
                } else {
                    &zeros[..cols]
                };
                for (tile, first_col) in (0..cols).step_by(16).enumerate() {
                    let width = 16.min(cols - first_col);
                    let out = &mut packed[pair_row(term) + tile * tile_pairs..][..width];
                    let (even, odd) = (&even[first_col..][..width], &odd[first_col..][..width]);
                    // SAFETY: `has` checked that the CPU has AVX-512BW.
                    unsafe { round_pairs_into(out, even, odd) };
                }
            }
        } else if row_stride == 1 {
            // A transposed matrix (a weight's `Wᵀ`, the keys' `kᵀ`): each column's terms lie
            // side by side, so its rounded values, read two at a time, are its pairs.
            let mut column = vec![MaybeUninit::new(0u16); k.next_multiple_of(2)];
            for col in 0..cols {
                let values = &rhs.storage[origin + col * col_stride..][..k];
                // SAFETY: `has` checked that the CPU has AVX-512BW.
                unsafe { round_into(&mut column[..k], values) };
                let at = (col / 16) * tile_pairs + col % 16;
                for (pair_index, two) in column.chunks_exact(2).enumerate() {
                    // SAFETY: initialised (as zeros, then the `k` values just above).
                    let [even, odd] = [0, 1].map(|i| unsafe { two[i].assume_init() });
                    packed[pair_row(2 * pair_index) + at].write(pair(even, odd));
                }
            }
        } else {
            for col in 0..cols {
                let column = &rhs.storage[origin + col * col_stride..];
                let at = (col / 16) * tile_pairs + col % 16;
                for term in (0..k).step_by(2) {
                    let even = bf16_bits(column[term * row_stride]);
                    let odd = if term + 1 < k {
                        bf16_bits(column[(term + 1) * row_stride])
                    } else {
                        0
                    };
                    packed[pair_row(term) + at].write(pair(even, odd));
                }
            }
        }
    };
    packed_by_blocks([n, k], panel, parallel, pack_panel)
}

/// One side of a product packed: for each 32 of its `lines` (the left side's rows, the right
/// side's columns), a block of `block_len` values, which `pack` (given the block's index)
/// writes, in parallel where `parallel`. `pack` must write every value of its lines and of
/// the side's `terms`; a block with fewer than 32 lines or 32-term steps is zeroed first
/// for the values past them, and no other is zeroed.
fn packed_by_blocks<T: Send + Copy + Default>(
    [lines, terms]: [usize; 2],
    block_len: usize,
    parallel: bool,
    pack: impl Fn((usize, &mut [MaybeUninit<T>])) + Send + Sync,
) -> Vec<T> {
    let blocks = lines.div_ceil(BLOCK);
    let len = blocks * block_len;
    let mut packed = Vec::with_capacity(len);
    let slots = &mut packed.spare_capacity_mut()[..len];
    let pack = |(block, slots): (usize, &mut [MaybeUninit<T>])| {
        if (block + 1) * BLOCK > lines || terms % DEPTH != 0 {
            slots.fill(MaybeUninit::new(T::default()));
        }
        pack((block, slots));
    };
    if parallel {
        slots.par_chunks_mut(block_len).enumerate().for_each(pack);
    } else {
        slots.chunks_mut(block_len).enumerate().for_each(pack);
    }
    // SAFETY: every one of the `len` values was written by `pack`.
    unsafe { packed.set_len(len) };
    packed
}

/// Two bf16 values side by side, as a tile row holds them: `even` first (the low half).
#[inline(always)]
fn pair(even: u16, odd: u16) -> u32 {
    u32::from(even) | u32::from(odd) << 16
}

/// The 32 values from `row` rounded to bf16 in place, as f32.
///
/// # Safety
/// `row` points at 32 initialised values, and the CPU has AVX-512 (see [`has`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn round_row(row: *mut f32) {
    // SAFETY: as the caller promises.
    let row = unsafe { std::slice::from_raw_parts_mut(row, BLOCK) };
    for value in row {
        *value = round_bf16(*value);
    }
}

/// `values` rounded to bf16 into `out`, of the same length.
///
/// # Safety
/// The CPU has AVX-512BW (every CPU with AMX or AVX512-BF16 has).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn round_into(out: &mut [MaybeUninit<u16>], values: &[f32]) {
    for (out, value) in out.iter_mut().zip(values) {
        out.write(bf16_bits(*value));
    }
}

/// `even` and `odd` (of one length) rounded to bf16 and paired into `out` (see [`pair`]).
///
/// # Safety
/// The CPU has AVX-512BW (every CPU with AMX or AVX512-BF16 has).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn round_pairs_into(out: &mut [MaybeUninit<u32>], even: &[f32], odd: &[f32]) {
    for ((out, even), odd) in out.iter_mut().zip(even).zip(odd) {
        out.write(pair(bf16_bits(*even), bf16_bits(*odd)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers in [-2, 2), most of them not bf16 values, from a fixed seed.
    fn numbers(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 8) as f32 / (1u32 << 22) as f32 - 2.0
            })
            .collect()
    }

    /// `rows` x `cols` matrices stored at `starts` in `storage`, row-major or (`transposed`)
    /// column-major.
    fn matrices(
        storage: &[f32],
        starts: Vec<usize>,
        (rows, cols): (usize, usize),
        transposed: bool,
    ) -> Matrices<'_> {
        let (row_stride, col_stride) = if transposed { (1, rows) } else { (cols, 1) };
        Matrices {
            storage,
            batch: vec![starts.len()],
            starts,
            rows,
            cols,
            row_stride: row_stride as isize,
            col_stride: col_stride as isize,
        }
    }

    /// Element `(row, col)` of matrix `index`, rounded to bf16.
    fn rounded(matrices: &Matrices, index: usize, row: usize, col: usize) -> f64 {
        let at = matrices.starts[index]
            + row * matrices.row_stride as usize
            + col * matrices.col_stride as usize;
        f64::from(f32::from_bits(
            u32::from(bf16_bits(matrices.storage[at])) << 16,
        ))
    }

    /// The bf16 units this CPU has, each to be checked; none on most machines.
    fn units() -> Vec<Bf16Unit> {
        let units: Vec<_> = [Bf16Unit::Amx, Bf16Unit::Avx512]
            .into_iter()
            .filter(|&unit| has(unit))
            .collect();
        if units.is_empty() {
            eprintln!("this CPU has neither AMX nor AVX512-BF16: nothing to check here");
        }
        units
    }

    /// Checks matrix `index` of a product on `unit` against the f64 sums of the rounded
    /// operands' products: within 2⁻²⁰ of the sum of their magnitudes (f32 sums in another
    /// order), plus what `dst` held where `add`; and the same product rounded as it is
    /// stored against those results rounded, bit for bit.
    fn check(unit: Bf16Unit, [lhs, rhs]: [&Matrices; 2], index: usize, add: bool, parallel: bool) {
        let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
        let start = |i: usize| i as f32 * 0.25 - 3.0;
        let product = |round: bool| {
            let mut dst: Vec<_> = (0..m * n)
                .map(|i| MaybeUninit::new(if add { start(i) } else { f32::NAN }))
                .collect();
            multiply_into(&mut dst, [lhs, rhs], index, add, parallel, unit, round);
            // SAFETY: every element was written (or, with `add`, initialised above).
            dst.into_iter()
                .map(|value| unsafe { value.assume_init() })
                .collect::<Vec<f32>>()
        };
        let dst = product(false);
        let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let rounded_dst: Vec<f32> = dst.iter().map(|&v| round_bf16(v)).collect();
        assert_eq!(
            bits(&product(true)),
            bits(&rounded_dst),
            "{unit:?}, {m}x{k}x{n} (add {add}): rounded as stored"
        );
        for row in 0..m {
            for col in 0..n {
                let products =
                    (0..k).map(|t| rounded(lhs, index, row, t) * rounded(rhs, index, t, col));
                let (sum, size) = products.fold((0.0, 0.0), |(s, a), p| (s + p, a + p.abs()));
                let held = if add {
                    f64::from(start(row * n + col))
                } else {
                    0.0
                };
                let got = f64::from(dst[row * n + col]);
                let want = held + sum;
                assert!(
                    (got - want).abs() <= (size + held.abs()) * 2f64.powi(-20) + 1e-30,
                    "{unit:?}, {m}x{k}x{n} (add {add}): ({row}, {col}) is {got}, not {want}"
                );
            }
        }
    }

    #[test]
    fn bf16_products_match_f32_sums_of_products_of_the_rounded_values() {
        // Whole blocks, blocks cut at every edge, sums shorter and longer than a tile's,
        // single rows and columns, and more blocks than one task takes.
        let shapes = [
            (32, 32, 32),
            (1, 1, 1),
            (33, 65, 47),
            (70, 31, 100),
            (5, 200, 3),
        ];
        for unit in units() {
            for (m, k, n) in shapes.into_iter().chain([(160, 96, 161)]) {
                let (a, b) = (numbers(m * k, 1), numbers(k * n, 2));
                for (lhs_t, rhs_t, add) in (0..8).map(|i| (i & 1 == 1, i & 2 == 2, i & 4 == 4)) {
                    let lhs = matrices(&a, vec![0], (m, k), lhs_t);
                    let rhs = matrices(&b, vec![0], (k, n), rhs_t);
                    check(unit, [&lhs, &rhs], 0, add, m > 64);
                }
            }
        }
    }

    #[test]
    fn each_matrix_of_a_batch_is_read_from_its_own_start() {
        let (m, k, n) = (40, 70, 20);
        let (a, b) = (numbers(3 * m * k, 3), numbers(3 * k * n, 4));
        let lhs = matrices(&a, vec![0, m * k, 2 * m * k], (m, k), false);
        let rhs = matrices(&b, vec![2 * k * n, 0, k * n], (k, n), true);
        for unit in units() {
            for index in 0..3 {
                check(unit, [&lhs, &rhs], index, index == 1, false);
            }
        }
    }

    #[test]
    fn nan_and_infinity_reach_the_outputs_they_touch() {
        let (m, k, n) = (3, 40, 2);
        let mut a = vec![1.0; m * k];
        a[5] = f32::NAN;
        a[k + 7] = f32::INFINITY;
        let b = vec![0.5; k * n];
        let (lhs, rhs) = (
            matrices(&a, vec![0], (m, k), false),
            matrices(&b, vec![0], (k, n), false),
        );
        for unit in units() {
            let mut dst = vec![MaybeUninit::new(0.0); m * n];
            multiply_into(&mut dst, [&lhs, &rhs], 0, false, false, unit, false);
            // SAFETY: every element was written.
            let out: Vec<f32> = dst.iter().map(|v| unsafe { v.assume_init() }).collect();
            assert!(out[0].is_nan() && out[1].is_nan(), "{unit:?}: {out:?}");
            assert_eq!(out[2..4], [f32::INFINITY; 2], "{unit:?}");
            assert_eq!(out[4..6], [20.0; 2], "{unit:?}");
        }
    }
}
