//! Layers written for a GPU backend's operation fusion, which merges runs of element-wise
//! operations (and those right after a matrix product or around a reduction) into single
//! kernels. burn's own layers compute the same values with more kernels per training step:
//! each kernel a GPU runs costs host time to record and launch, which dominates the step of
//! a model as small as MiniLM. The CPU backend has fused operations of its own ([`crate::cpu`]).
//! LayerNorm is one operation with a hand-written backward pass ([`norm`]), and so is the
//! word-embedding lookup, whose gradient burn sums one column per thread ([`embedding`]).

mod embedding;
// Without a GPU backend the extension's generated dispatch routes to no backend, which
// leaves its non-tensor arguments unused.
#[cfg_attr(
    not(any(feature = "wgpu", feature = "cuda", test)),
    allow(unused_variables)
)]
mod norm;

use burn::backend::Dispatch;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::{Int, Tensor, TensorData};
pub use embedding::DistinctWords;
use embedding::FusableEmbeddingOps;
use norm::FusableNormOps;

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

/// `norm` applied over the last dimension of `input`, with the LayerNorm's `epsilon`: one
/// operation with a backward pass of its own ([`norm`]) where the norm has a β, as every
/// supported model's does; burn's LayerNorm where not.
pub fn layer_norm<const D: usize>(norm: &LayerNorm, epsilon: f64, input: Tensor<D>) -> Tensor<D> {
    let Some(beta) = norm.beta.as_ref() else {
        return norm.forward(input);
    };
    Tensor::from_dispatch(<Dispatch as FusableNormOps>::fusable_layer_norm(
        input.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        epsilon as f32,
    ))
}

/// `table`'s rows at `ids` (`[batch, seq]`), `[batch, seq, width]`, with the backward pass
/// of [`embedding`]: each of the batch's distinct `words` gets its gradient summed by a
/// matrix product, then the table's gradient is gathered from those sums (a word the batch
/// does not hold reads a zero row).
pub fn embedding(table: &Embedding, ids: Tensor<2, Int>, words: &DistinctWords) -> Tensor<3> {
    let [batch, seq] = ids.dims();
    let weights = table.weight.val();
    let [vocabulary, width] = weights.dims();
    let device = ids.device();
    // The distinct words, then at least one zero row for the words the batch does not
    // hold, rounded up so that the product's shapes (and the kernels autotuned for them)
    // repeat from batch to batch.
    let (tokens, numbers) = (batch * seq, (words.count() + 1).next_multiple_of(64));
    let token_slots = TensorData::new(words.token_slots().to_vec(), [tokens, 1]);
    let one_hot = Tensor::<2, Int>::from_data(token_slots, &device)
        .expand([tokens, numbers])
        .equal(
            Tensor::<1, Int>::arange(0..numbers as i64, &device)
                .reshape([1, numbers])
                .expand([tokens, numbers]),
        )
        .float();
    let slots = TensorData::new(words.slots(vocabulary), [vocabulary]);
    let rows = <Dispatch as FusableEmbeddingOps>::fusable_embedding(
        weights.into_dispatch(),
        ids.reshape([tokens]).into_dispatch(),
        one_hot.into_dispatch(),
        Tensor::<1, Int>::from_data(slots, &device).into_dispatch(),
    );
    Tensor::<2>::from_dispatch(rows).reshape([batch, seq, width])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::{EmbeddingConfig, LayerNormConfig, LinearConfig};
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

    /// A LayerNorm of width 24 with random γ and β, which train unless `frozen` (as in a
    /// LoRA run).
    fn random_norm(device: &Device, frozen: bool) -> LayerNorm {
        let mut norm = LayerNormConfig::new(24).with_epsilon(1e-12).init(device);
        let param = || {
            Param::from_tensor(Tensor::random([24], Distribution::Default, device))
                .set_require_grad(!frozen)
        };
        norm.gamma = param();
        norm.beta = Some(param());
        norm
    }

    #[test]
    fn the_layer_norm_is_burns_with_its_gradients() {
        let device = device();
        let norm = random_norm(&device, false);
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

    #[test]
    fn a_frozen_layer_norm_passes_burns_gradient_to_its_input_only() {
        let device = device();
        let norm = random_norm(&device, true);
        let input =
            Tensor::<2>::random([6, 24], Distribution::Normal(-1.0, 3.0), &device).require_grad();
        let weights = Tensor::<2>::random([6, 24], Distribution::Default, &device);
        let gradient = |out: Tensor<2>| {
            let grads = (out * weights.clone()).sum().backward();
            assert!(norm.gamma.grad(&grads).is_none());
            assert!(norm.beta.as_ref().unwrap().grad(&grads).is_none());
            input.grad(&grads).unwrap()
        };
        let want = gradient(norm.forward(input.clone()));
        let got = gradient(layer_norm(&norm, 1e-12, input.clone()));
        assert_all_close(&[got], &[want]);
    }

    #[test]
    fn the_layer_norm_without_autodiff_is_burns() {
        let device = Device::flex();
        let norm = random_norm(&device, true);
        let input = Tensor::<3>::random([2, 3, 24], Distribution::Normal(2.0, 1.0), &device);
        let want = norm.forward(input.clone());
        let got = layer_norm(&norm, 1e-12, input);
        assert_all_close(&[got], &[want]);
    }

    #[test]
    fn the_embedding_is_burns_with_its_gradient() {
        let device = device();
        let table = EmbeddingConfig::new(11, 6).init(&device);
        // Repeated words (3 and 7, within a row and across rows), padding (0), and words
        // the batch does not hold (their gradient rows stay 0).
        let ids: Vec<u32> = vec![3, 7, 3, 0, 7, 9, 2, 0];
        let words = DistinctWords::of(&ids);
        assert_eq!(words.count(), 5);
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&id| i64::from(id)).collect(), [2, 4]),
            &device,
        );
        let weights = Tensor::<3>::random([2, 4, 6], Distribution::Default, &device);
        let gradient = |out: Tensor<3>| {
            let grads = (out * weights.clone()).sum().backward();
            table.weight.grad(&grads).unwrap()
        };
        let want = table.forward(ids.clone());
        let got = embedding(&table, ids, &words);
        assert_all_close(std::slice::from_ref(&got), std::slice::from_ref(&want));
        assert_all_close(&[gradient(got)], &[gradient(want)]);
    }

    #[test]
    fn distinct_words_are_numbered_in_order() {
        let words = DistinctWords::of(&[5, 2, 5, 9, 2]);
        assert_eq!(words.count(), 3);
        assert_eq!(words.token_slots(), [1, 0, 1, 2, 0]);
        // Words 0..10: 2, 5 and 9 have their numbers, the rest the zero row's (3); an id
        // beyond the vocabulary is left out.
        assert_eq!(words.slots(10), [3, 3, 0, 3, 3, 1, 3, 3, 3, 2]);
        assert_eq!(words.slots(6), [3, 3, 0, 3, 3, 1]);
    }
}
