//! Mixed precision for the matrix products (see [`Precision`]): each product casts its f32
//! inputs down and its result back up, so the weights, their gradients and everything
//! between products (softmax, LayerNorm, GELU, the loss) stay f32. Through autodiff the
//! casts run backwards too: a product's gradients are computed in the low format and reach
//! the f32 weights cast up. On the CPU backend the narrow values stay in f32 buffers,
//! rounded to the format (`cpu::narrow_linear`), which computes the same products without
//! burn's casts and copies.

use crate::cpu::{self, NarrowFormat};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
pub use run_protocol::Precision;

/// The narrow format `precision` runs products in; `None` for f32.
fn narrow_format(precision: Precision) -> Option<NarrowFormat> {
    match precision {
        Precision::Fp32 => None,
        Precision::Bf16 => Some(NarrowFormat::Bf16),
        Precision::F16 => Some(NarrowFormat::F16),
    }
}

/// Whether `device` computes in `precision`'s format (every device computes in f32; wgpu's
/// shading language has no bf16, and f16 only where the GPU offers it).
pub fn supported_on(precision: Precision, device: &Device) -> bool {
    narrow_format(precision).is_none_or(|format| device.supports_dtype(format.dtype()))
}

/// `lhs · rhs` computed in `precision`, returned in f32.
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>, precision: Precision) -> Tensor<D> {
    match narrow_format(precision) {
        None => cpu::matmul(lhs, rhs),
        Some(format) => cpu::narrow_matmul(lhs, rhs, format),
    }
}

/// `linear` applied to `rows` (`[tokens, d_in]`) with its product and bias in `precision`,
/// returned in f32.
pub fn linear(linear: &Linear, rows: Tensor<2>, precision: Precision) -> Tensor<2> {
    match narrow_format(precision) {
        None => cpu::linear(linear, rows, false),
        Some(format) => cpu::narrow_linear(linear, rows, format, false),
    }
}

/// `linear` applied to `rows` as [`linear`] does, then exact GELU (in f32).
pub fn linear_gelu(linear: &Linear, rows: Tensor<2>, precision: Precision) -> Tensor<2> {
    match narrow_format(precision) {
        None => cpu::linear(linear, rows, true),
        Some(format) => cpu::narrow_linear(linear, rows, format, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::{DType, Device, Distribution, Tolerance};

    /// How far each format's results may be from f32's on these inputs: bf16 keeps 8 bits
    /// of mantissa (a relative rounding of 2^-9), f16 11 bits (2^-12).
    fn tolerance(precision: Precision) -> Tolerance<f32> {
        match precision {
            Precision::Fp32 => Tolerance::rel_abs(1e-5, 1e-5),
            Precision::Bf16 => Tolerance::rel_abs(0.05, 0.05),
            Precision::F16 => Tolerance::rel_abs(0.01, 0.01),
        }
    }

    #[test]
    fn the_cpu_computes_in_every_format() {
        for precision in Precision::ALL {
            assert!(supported_on(precision, &Device::flex()), "{precision:?}");
            assert!(
                supported_on(precision, &Device::flex().autodiff()),
                "{precision:?}"
            );
        }
    }

    #[test]
    fn products_come_back_in_f32_close_to_the_f32_product() {
        let device = Device::flex();
        let lhs = Tensor::<3>::random([2, 8, 64], Distribution::Default, &device);
        let rhs = Tensor::<3>::random([2, 64, 5], Distribution::Default, &device);
        let exact = lhs.clone().matmul(rhs.clone()).into_data();
        for precision in Precision::ALL {
            let got = matmul(lhs.clone(), rhs.clone(), precision);
            assert_eq!(got.dtype(), DType::F32, "{precision:?}");
            got.into_data()
                .assert_approx_eq::<f32>(&exact, tolerance(precision));
        }
    }

    #[test]
    fn low_precision_rounds_the_product() {
        // 1 + 2^-9 is exact in f32 and f16 but rounds to 1 in bf16 (8 bits of mantissa);
        // 1 + 2^-12 rounds to 1 in f16 as well.
        let device = Device::flex();
        let product = |value: f32, precision| {
            let lhs = Tensor::<2>::from_floats([[value]], &device);
            let rhs = Tensor::<2>::from_floats([[1.0]], &device);
            matmul(lhs, rhs, precision).into_scalar::<f32>()
        };
        let fine = 1.0 + 2f32.powi(-9);
        assert_eq!(product(fine, Precision::Fp32), fine);
        assert_eq!(product(fine, Precision::F16), fine);
        assert_eq!(product(fine, Precision::Bf16), 1.0);
        let finer = 1.0 + 2f32.powi(-12);
        assert_eq!(product(finer, Precision::F16), 1.0);
        assert_eq!(product(finer, Precision::Fp32), finer);
    }

    #[test]
    fn weights_get_f32_gradients_close_to_the_f32_ones() {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(64, 6).init(&device);
        let rows = Tensor::<2>::random([16, 64], Distribution::Default, &device);
        let gradient = |precision| {
            let grads = linear(&layer, rows.clone(), precision)
                .powi_scalar(2)
                .mean()
                .backward();
            let weight = layer.weight.grad(&grads).unwrap();
            let bias = layer.bias.as_ref().unwrap().grad(&grads).unwrap();
            assert_eq!(weight.dtype(), DType::F32, "{precision:?}");
            assert_eq!(bias.dtype(), DType::F32, "{precision:?}");
            (weight.into_data(), bias.into_data())
        };
        let (weight, bias) = gradient(Precision::Fp32);
        for precision in [Precision::Bf16, Precision::F16] {
            let (low_weight, low_bias) = gradient(precision);
            low_weight.assert_approx_eq::<f32>(&weight, tolerance(precision));
            low_bias.assert_approx_eq::<f32>(&bias, tolerance(precision));
        }
    }
}
