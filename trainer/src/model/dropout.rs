//! Dropout for every layer of the model: burn's [`Dropout`] module (its probability and
//! training flag), applied with a faster mask on the CPU backend.
//!
//! burn draws each mask element from a ChaCha generator through its distribution
//! sampler, then multiplies twice (mask, then 1/keep), one thread for each pass, and its
//! backward pass keeps the mask as a tensor. A MiniLM step at 64×32 needs about 20 million
//! mask elements, which a profile put at about 8% of the CPU step. Here one 64-bit seed is
//! drawn from burn's generator (so `Device::seed` still fixes every mask), and
//! [`cpu::dropout`] draws the mask from it in parallel and applies it in one pass, keeping
//! one bit per element for the backward pass.
//!
//! On a GPU the mask is generated on the device. burn's dropout draws each mask with a
//! kernel of its own, and every kernel launch costs the host time to record, which bounds a
//! small model's step. An encoder layer has three dropouts (two more while LoRA trains, one
//! more for DeBERTa's relative positions), so [`Noise`] draws the masks of all of them that
//! share a probability (every supported model's do, LoRA's at its default) with one kernel
//! and hands each dropout its own part, which fusion multiplies into the kernel that
//! already reads the dropout's input, as it does burn's mask.

use crate::cpu::{self, DropoutMask};
use crate::device::on_cpu_backend;
use burn::nn::Dropout;
use burn::tensor::{Device, Distribution, Tensor};
use std::cell::Cell;

/// `layer` applied to `input`: identity unless the layer trains on an autodiff device.
pub fn apply<const D: usize>(layer: &Dropout, input: Tensor<D>) -> Tensor<D> {
    let device = input.device();
    if !drops(layer, &device) {
        return input;
    }
    if !on_cpu_backend(&device) {
        return layer.forward(input);
    }
    let mask = DropoutMask::new(seed_from_backend(&device), 1.0 - layer.prob);
    cpu::dropout(input, mask)
}

/// The masks of a planned sequence of dropouts with one probability, drawn by one kernel
/// (values 1 where kept, 0 where dropped) and handed out in order ([`Noise::apply`]). Each
/// dropout's part starts on a 1 KiB boundary, so that it is a view of the one buffer rather
/// than a copy. A dropout that does not match the next planned one (another size or
/// probability, or none left) draws its own mask as [`apply`] does, and no part is handed
/// out twice, so every mask stays independent of the others.
pub struct Noise {
    /// The masks, or `None` where nothing is drawn ahead (the CPU backend, evaluation).
    values: Option<Tensor<1>>,
    /// The planned dropouts' probability of dropping an element.
    prob: f64,
    /// The planned dropouts' parts, in the order they run: where each starts in `values`
    /// and its size, in values.
    parts: Vec<(usize, usize)>,
    /// How many planned dropouts have taken their part.
    taken: Cell<usize>,
}

/// Values per part boundary: 256 f32 values, 1 KiB, a multiple of every backend's buffer
/// offset alignment (wgpu's limit is at most 256 bytes).
const PART_ALIGNMENT: usize = 256;

impl Noise {
    /// Masks for `dropouts` (each layer with the number of values of its input, in the
    /// order they will run) that drop with the first one's probability, drawn on the device
    /// where the layers train on a GPU; empty elsewhere, where [`Noise::apply`] is
    /// [`apply`].
    pub fn draw(device: &Device, dropouts: &[(&Dropout, usize)]) -> Self {
        if on_cpu_backend(device) {
            return Self::none();
        }
        let active: Vec<_> = dropouts
            .iter()
            .filter(|(layer, _)| drops(layer, device))
            .collect();
        let Some((first, _)) = active.first() else {
            return Self::none();
        };
        let sizes = active
            .iter()
            .filter(|(layer, _)| layer.prob == first.prob)
            .map(|&&(_, size)| size)
            .collect();
        Self::draw_for(device, first.prob, sizes)
    }

    /// Noise for nothing: every dropout draws its own mask.
    pub fn none() -> Self {
        Self {
            values: None,
            prob: 0.0,
            parts: Vec::new(),
            taken: Cell::new(0),
        }
    }

    /// One draw for dropouts of `sizes` values dropping with probability `prob`, on any
    /// backend.
    fn draw_for(device: &Device, prob: f64, sizes: Vec<usize>) -> Self {
        let mut total = 0;
        let parts = sizes
            .into_iter()
            .map(|size| {
                let start = total;
                total += size.next_multiple_of(PART_ALIGNMENT);
                (start, size)
            })
            .collect();
        Self {
            values: (total > 0)
                .then(|| Tensor::random([total], Distribution::Bernoulli(1.0 - prob), device)),
            prob,
            parts,
            taken: Cell::new(0),
        }
    }

    /// `layer` applied to `input` with the next planned mask: each element kept and scaled
    /// by 1/keep, or zeroed. Falls back to [`apply`] where the input is not the next
    /// planned one.
    pub fn apply<const D: usize>(&self, layer: &Dropout, input: Tensor<D>) -> Tensor<D> {
        let taken = self.taken.get();
        let size = input.shape().num_elements();
        let (Some(values), Some(&(start, planned))) = (&self.values, self.parts.get(taken)) else {
            return apply(layer, input);
        };
        if planned != size || layer.prob != self.prob || !drops(layer, &input.device()) {
            return apply(layer, input);
        }
        self.taken.set(taken + 1);
        let mask = values
            .clone()
            .slice(start..start + size)
            .reshape(input.dims());
        (input * mask).mul_scalar(1.0 / (1.0 - self.prob))
    }
}

/// Whether `layer` drops anything on `device`: it trains, with a probability above zero,
/// on an autodiff device.
fn drops(layer: &Dropout, device: &Device) -> bool {
    layer.training.is_enabled() && device.is_autodiff() && layer.prob > 0.0
}

/// 64 random bits from the backend's seeded generator.
fn seed_from_backend(device: &Device) -> u64 {
    let draws = Tensor::<1>::random([4], Distribution::Default, device)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    draws.iter().fold(0x5EED_u64, |seed, draw| {
        (seed.rotate_left(23) ^ u64::from(draw.to_bits())).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::DropoutConfig;

    #[test]
    fn masks_keep_the_right_share_scaled_and_repeat_for_a_seed() {
        let factors = |seed| DropoutMask::new(seed, 0.9).factors(200_001);
        let mask = factors(7);
        let kept = mask.iter().filter(|&&v| v != 0.0).count() as f64 / mask.len() as f64;
        assert!((kept - 0.9).abs() < 0.005, "kept {kept}");
        assert!(
            mask.iter()
                .all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6)
        );
        assert_eq!(mask, factors(7));
        assert_ne!(mask, factors(8));
    }

    #[test]
    fn dropout_acts_only_while_training_and_follows_the_device_seed() {
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.5).init();
        let input = || Tensor::<2>::ones([64, 64], &device);
        let dropped = |seed| {
            device.seed(seed);
            apply(&layer, input())
                .into_data()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let first = dropped(1);
        assert_eq!(first, dropped(1));
        assert_ne!(first, dropped(2));
        let zeros = first.iter().filter(|&&v| v == 0.0).count();
        assert!((1500..2600).contains(&zeros), "{zeros} of 4096 dropped");
        assert!(first.iter().all(|&v| v == 0.0 || v == 2.0));
        // Gradients flow through kept elements only, scaled like them.
        let x = input().require_grad();
        device.seed(1);
        let grads = apply(&layer, x.clone()).sum().backward();
        let grad = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert_eq!(grad, first);

        // Off the autodiff device (evaluation), the input passes unchanged.
        let on_inference = Tensor::<2>::ones([4, 4], &Device::flex());
        assert_eq!(
            apply(&layer, on_inference.clone()).into_data(),
            on_inference.into_data()
        );
    }

    /// The values of `tensor`.
    fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor.into_data().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn noise_parts_keep_the_right_share_each_its_own() {
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.25).init();
        let sizes = [40_000, 30_001, 30_001];
        let masks = |seed| {
            device.seed(seed);
            let noise = Noise::draw(&device, &[]);
            assert!(noise.values.is_none(), "nothing planned, nothing drawn");
            let noise = Noise::draw_for(&device, 0.25, sizes.to_vec());
            let masks = sizes
                .iter()
                .map(|&size| values(noise.apply(&layer, Tensor::<1>::ones([size], &device))))
                .collect::<Vec<_>>();
            assert_eq!(noise.taken.get(), 3);
            masks
        };
        let first = masks(3);
        for mask in &first {
            let kept = mask.iter().filter(|&&v| v != 0.0).count() as f64 / mask.len() as f64;
            assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
            let scale = (1.0 / 0.75) as f32;
            assert!(mask.iter().all(|&v| v == 0.0 || (v - scale).abs() < 1e-6));
        }
        // The two parts of one size were not given the same values.
        assert_ne!(first[1], first[2]);
        assert_eq!(first, masks(3));
        assert_ne!(first, masks(4));
    }

    #[test]
    fn noise_hands_out_planned_parts_only() {
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.5).init();
        let noise = Noise::draw_for(&device, 0.5, vec![64, 100]);
        // 100 values are not the next planned part (64): drawn apart, nothing taken.
        noise.apply(&layer, Tensor::<1>::ones([100], &device));
        assert_eq!(noise.taken.get(), 0);
        noise.apply(&layer, Tensor::<1>::ones([64], &device));
        noise.apply(&layer, Tensor::<1>::ones([100], &device));
        assert_eq!(noise.taken.get(), 2);
        // A dropout with another probability draws its own mask.
        let other = DropoutConfig::new(0.9).init();
        let plan = Noise::draw_for(&device, 0.5, vec![64]);
        plan.apply(&other, Tensor::<1>::ones([64], &device));
        assert_eq!(plan.taken.get(), 0);
        // Past the plan, every dropout still drops.
        let extra = values(noise.apply(&layer, Tensor::<1>::ones([4096], &device)));
        assert!(extra.contains(&0.0) && extra.contains(&2.0));
        assert_eq!(noise.taken.get(), 2);
        // Evaluation and inference devices pass the input unchanged.
        let inference = Tensor::<1>::ones([64], &Device::flex());
        let untouched =
            Noise::draw_for(&Device::flex(), 0.5, vec![64]).apply(&layer, inference.clone());
        assert_eq!(values(untouched), values(inference));
    }

    #[test]
    fn noise_gradients_flow_through_kept_elements_scaled() {
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.5).init();
        let noise = Noise::draw_for(&device, 0.5, vec![1000]);
        let x = Tensor::<2>::ones([10, 100], &device).require_grad();
        let out = noise.apply(&layer, x.clone());
        let dropped = values(out.clone());
        let grads = out.sum().backward();
        assert_eq!(values(x.grad(&grads).unwrap()), dropped);
    }

    #[test]
    fn on_the_cpu_noise_leaves_each_dropout_its_own_mask() {
        let device = Device::flex().autodiff();
        let layer = DropoutConfig::new(0.5).init();
        let input = || Tensor::<2>::ones([32, 32], &device);
        let noise = Noise::draw(&device, &[(&layer, 1024)]);
        assert!(noise.values.is_none());
        device.seed(9);
        let pooled = values(noise.apply(&layer, input()));
        device.seed(9);
        assert_eq!(pooled, values(apply(&layer, input())));
    }
}
