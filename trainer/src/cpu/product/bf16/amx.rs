//! bf16 products on AMX's tiles: the process's request for the tile state, and the
//! product of one packed 32x32 block in four tile registers.

use std::arch::asm;
use std::array;

/// Bytes in one tile row: 32 bf16 values.
const TILE_ROW_BYTES: usize = 64;

/// The tile configuration `ldtilecfg` loads (palette 1): each of the eight tiles 16 rows
/// of 64 bytes (the entries past the eighth must be zero).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

/// Asks Linux for the tile state (it grants AMX only on request), where CPUID says the CPU
/// has AMX's tiles and their bf16 products; whether it was granted.
#[cfg(target_os = "linux")]
pub(super) fn enable_amx() -> bool {
    use std::arch::x86_64::__cpuid_count;
    const AMX_BF16: u32 = 1 << 22;
    const AMX_TILE: u32 = 1 << 24;
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    if __cpuid_count(0, 0).eax < 7 {
        return false;
    }
    let features = __cpuid_count(7, 0).edx;
    if features & (AMX_BF16 | AMX_TILE) != AMX_BF16 | AMX_TILE {
        return false;
    }
    // SAFETY: arch_prctl with this request only changes which state the kernel saves for
    // the process; it touches no memory of ours.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

/// AMX is left alone on other systems, which have their own ways of granting it.
#[cfg(not(target_os = "linux"))]
pub(super) fn enable_amx() -> bool {
    false
}

/// The tile registers, configured for this thread's products; released when dropped.
pub(super) struct Tiles;

impl Tiles {
    /// Loads the tile configuration on this thread. Only call where `has` AMX.
    pub(super) fn configure() -> Self {
        let config = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: array::from_fn(|tile| if tile < 8 { TILE_ROW_BYTES as u16 } else { 0 }),
            rows: array::from_fn(|tile| if tile < 8 { 16 } else { 0 }),
        };
        // SAFETY: the process holds the tile state (`super::has`), and the configuration is
        // a valid palette-1 one: eight tiles of 16 rows of 64 bytes, the rest unused zeros.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly)) };
        Tiles
    }

    /// Adds the 32x32 product of a packed left block and a packed right block (`depth`
    /// tile products deep) to the output block at `out` (rows `row_bytes` apart), or
    /// writes it there where `add` is false.
    ///
    /// # Safety
    /// `lhs` and `rhs` hold `depth` packed blocks of 32x32 bf16 values (see `pack_lhs`
    /// and `pack_rhs`), `depth` is at least 1, and `out` holds 32 rows of 32 f32 values,
    /// `row_bytes` apart, initialised where `add` is true.
    pub(super) unsafe fn multiply_block(
        &self,
        out: *mut f32,
        row_bytes: usize,
        add: bool,
        lhs: *const u16,
        rhs: *const u16,
        depth: usize,
    ) {
        let lower = out.wrapping_byte_add(16 * row_bytes);
        // SAFETY: the caller's promises: every load and store below stays inside `lhs`,
        // `rhs` and the output block.
        unsafe {
            if add {
                asm!(
                    "tileloadd tmm0, [{upper} + {stride}*1]",
                    "tileloadd tmm1, [{upper} + {stride}*1 + 64]",
                    "tileloadd tmm2, [{lower} + {stride}*1]",
                    "tileloadd tmm3, [{lower} + {stride}*1 + 64]",
                    upper = in(reg) out,
                    lower = in(reg) lower,
                    stride = in(reg) row_bytes,
                    options(nostack, readonly),
                );
            } else {
                asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    options(nostack, nomem)
                );
            }
            asm!(
                "2:",
                "tileloadd tmm4, [{lhs} + {stride}*1]",
                "tileloadd tmm5, [{lhs} + {stride}*1 + 1024]",
                "tileloadd tmm6, [{rhs} + {stride}*1]",
                "tileloadd tmm7, [{rhs} + {stride}*1 + 1024]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {lhs}, 2048",
                "add {rhs}, 2048",
                "dec {depth}",
                "jnz 2b",
                lhs = inout(reg) lhs => _,
                rhs = inout(reg) rhs => _,
                depth = inout(reg) depth => _,
                stride = in(reg) TILE_ROW_BYTES,
                options(nostack, readonly),
            );
            asm!(
                "tilestored [{upper} + {stride}*1], tmm0",
                "tilestored [{upper} + {stride}*1 + 64], tmm1",
                "tilestored [{lower} + {stride}*1], tmm2",
                "tilestored [{lower} + {stride}*1 + 64], tmm3",
                upper = in(reg) out,
                lower = in(reg) lower,
                stride = in(reg) row_bytes,
                options(nostack),
            );
        }
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: releases the tile state this thread configured.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}
