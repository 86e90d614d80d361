//! Layers written for a GPU backend's operation fusion, which merges runs of element-wise
//! operations (and those right after a matrix product or around a reduction) into single
//! kernels. burn's own layers compute the same values with more kernels per training step:
//! each kernel a GPU runs costs host time to record and launch, which dominates the step of
//! a model as small as MiniLM. The CPU backend has fused operations of its own ([`crate::cpu`]).

use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;

/// `rows · weight + bias`. burn's `linear` reshapes the bias only after the product, which
/// ends the product's fused block and leaves the addition a kernel of its own; reshaped
/// first, the bias is one more input of the product's block, which can also take the
/// element-wise operations that follow (GELU).
pub fn linear(linear: &Linear, rows: Tensor<2>) -> Tensor<2> {
    let weight = linear.weight.val();
    match &linear.bias {
        Some(bias) => {
            let [width] = bias.dims();
            let bias = bias.val().reshape([1, width]);
            rows.matmul(weight) + bias
        }
        None => rows.matmul(weight),
    }
}

/// `norm` applied over the last dimension of `input`, with the LayerNorm's `epsilon`.
/// burn's LayerNorm reshapes γ and β between its element-wise steps (each reshape ends a
/// fused block), takes its means with `mean_dim` and squares with a power kernel; here γ
/// and β are shaped first, the means are sums scaled, and the square is a product, which
/// fusion merges into fewer kernels.
pub fn layer_norm<const D: usize>(norm: &LayerNorm, epsilon: f64, input: Tensor<D>) -> Tensor<D> {
    let last = D - 1;
    let width = input.dims()[last];
    let mut row = [1; D];
    row[last] = width;
    let gamma = norm.gamma.val().reshape(row);
    let beta = norm.beta.as_ref().map(|beta| beta.val().reshape(row));
    let scale = 1.0 / width as f64;
    let centered = input.clone() - input.sum_dim(last).mul_scalar(scale);
    let variance = (centered.clone() * centered.clone())
        .sum_dim(last)
        .mul_scalar(scale);
    let normalized = centered * variance.add_scalar(epsilon).sqrt().recip();
    match beta {
        Some(beta) => normalized * gamma + beta,
        None => normalized * gamma,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::{LayerNormConfig, LinearConfig};
    use burn::tensor::{Device, Distribution, Tolerance};

    fn device() -> Device {
        Device::flex().autodiff()
    }

    /// Panics unless each pair of tensors agrees to within 1e-5.
    fn assert_all_close<const D: usize>(got: &[Tensor<D>], want: &[Tensor<D>]) {
        assert_eq!(got.len(), want.len());
        for (got, want) in got.iter().zip(want) {
            got.clone()
                .into_data()
                .assert_approx_eq::<f32>(&want.clone().into_data(), Tolerance::rel_abs(1e-5, 1e-5));
        }
    }

    #[test]
    fn the_linear_layer_is_burns_with_its_gradients() {
        let device = device();
        let layer = LinearConfig::new(24, 10).init(&device);
        let rows = Tensor::<2>::random([7, 24], Distribution::Default, &device).require_grad();
        let weights = Tensor::<2>::random([7, 10], Distribution::Default, &device);
        let gradients = |out: Tensor<2>| {
            let grads = (out * weights.clone()).sum().backward();
            let bias = layer.bias.as_ref().unwrap().grad(&grads).unwrap();
            [
                rows.grad(&grads).unwrap(),
                layer.weight.grad(&grads).unwrap(),
                bias.unsqueeze(),
            ]
        };
        let (want, got) = (layer.forward(rows.clone()), linear(&layer, rows.clone()));
        assert_all_close(std::slice::from_ref(&got), std::slice::from_ref(&want));
        assert_all_close(&gradients(got), &gradients(want));
    }

    #[test]
    fn the_layer_norm_is_burns_with_its_gradients() {
        let device = device();
        let mut norm = LayerNormConfig::new(24).with_epsilon(1e-12).init(&device);
        norm.gamma = Param::from_tensor(Tensor::random([24], Distribution::Default, &device));
        norm.beta = Some(Param::from_tensor(Tensor::random(
            [24],
            Distribution::Default,
            &device,
        )));
        // Rows far from zero mean, where a careless variance loses digits.
        let input =
            Tensor::<3>::random([3, 5, 24], Distribution::Normal(4.0, 2.0), &device).require_grad();
        let weights = Tensor::<3>::random([3, 5, 24], Distribution::Default, &device);
        let gradients = |out: Tensor<3>| {
            let grads = (out * weights.clone()).sum().backward();
            let beta = norm.beta.as_ref().unwrap().grad(&grads).unwrap();
            [
                input.grad(&grads).unwrap(),
                norm.gamma.grad(&grads).unwrap().reshape([1, 1, 24]),
                beta.reshape([1, 1, 24]),
            ]
        };
        let want = norm.forward(input.clone());
        let got = layer_norm(&norm, 1e-12, input.clone());
        assert_all_close(std::slice::from_ref(&got), std::slice::from_ref(&want));
        assert_all_close(&gradients(got), &gradients(want));
    }
}
