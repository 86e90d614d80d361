//! Output buffers that the kernels' rayon tasks fill part by part: each task initialises its
//! own part (zeros, or a copy of its input) right before it writes it, while the part is in
//! its core's cache, rather than one thread zeroing the whole buffer first (`vec![0.0; n]`).
//! A buffer starts as `Vec::with_capacity(len)`; tasks take their parts of its [`slots`]
//! through [`zeroed`] or [`copied`]; [`filled`] then gives it its length.

use std::mem::MaybeUninit;

/// The `len` slots of `buffer` (empty, with room for them) to fill.
pub(super) fn slots(buffer: &mut Vec<f32>, len: usize) -> &mut [MaybeUninit<f32>] {
    &mut buffer.spare_capacity_mut()[..len]
}

/// `part` of a buffer's slots zeroed, as values to write over.
pub(super) fn zeroed(part: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    part.fill(MaybeUninit::new(0.0));
    // SAFETY: every slot was just written.
    unsafe { written(part) }
}

/// `part` of a buffer's slots holding a copy of `from` (of its length), as values to write
/// over.
pub(super) fn copied<'a>(part: &'a mut [MaybeUninit<f32>], from: &[f32]) -> &'a mut [f32] {
    assert_eq!(
        part.len(),
        from.len(),
        "a copy into slots of another length"
    );
    for (slot, &value) in part.iter_mut().zip(from) {
        slot.write(value);
    }
    // SAFETY: every slot was just written.
    unsafe { written(part) }
}

/// `part` as the values its slots hold.
///
/// # Safety
/// Every slot of `part` was written.
unsafe fn written(part: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has f32's layout, and the caller promises every value.
    unsafe { &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `buffer` with its first `len` values, which tasks initialised.
///
/// # Safety
/// Every one of the `len` slots was initialised, through [`zeroed`] or [`copied`].
pub(super) unsafe fn filled(mut buffer: Vec<f32>, len: usize) -> Vec<f32> {
    // SAFETY: as the caller promises.
    unsafe { buffer.set_len(len) };
    buffer
}
