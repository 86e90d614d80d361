//! Dropout for every layer of the model: burn's [`Dropout`] module (its probability and
//! training flag), applied with a faster mask on the CPU backend.
//!
//! burn draws each mask element from a ChaCha generator through its distribution
//! sampler, then multiplies twice (mask, then 1/keep), one thread for each pass, and its
//! backward pass keeps the mask as a tensor. A MiniLM step at 64×32 needs about 20 million
//! mask elements, which a profile put at about 8% of the CPU step. Here one 64-bit seed is
//! drawn from burn's generator (so `Device::seed` still fixes every mask), and
//! [`cpu::dropout`] draws the mask from it in parallel and applies it in one pass, keeping
//! one bit per element for the backward pass. On a GPU burn's own dropout runs, its mask
//! generated on the device.

use crate::cpu::{self, DropoutMask};
use crate::device::on_cpu_backend;
use burn::nn::Dropout;
use burn::tensor::{Device, Distribution, Tensor};

/// `layer` applied to `input`: identity unless the layer trains on an autodiff device.
pub fn apply<const D: usize>(layer: &Dropout, input: Tensor<D>) -> Tensor<D> {
    let device = input.device();
    if !layer.training.is_enabled() || !device.is_autodiff() || layer.prob == 0.0 {
        return input;
    }
    if !on_cpu_backend(&device) {
        return layer.forward(input);
    }
    let mask = DropoutMask::new(seed_from_backend(&device), 1.0 - layer.prob);
    cpu::dropout(input, mask)
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
}
