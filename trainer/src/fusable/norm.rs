//! LayerNorm with a backward pass of its own, for a GPU backend's operation fusion.
//!
//! Under autodiff, LayerNorm written with tensor operations records the backward pass of
//! each of its dozen operations: about eighteen operations for the input's gradient alone,
//! two of them row sums, with every intermediate kept for them. Written out, the input's
//! gradient is `(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) / σ` with `ĝ = g·γ`: the same two row sums and
//! a few element-wise operations, keeping only `x̂` and `1/σ`. γ's and β's gradients are
//! column sums (`Σ g·x̂` and `Σ g`), taken by one reduction over both, and only where they
//! train (not in a LoRA run).
//!
//! The operation is a burn backend extension of the cubecl backend (fused) and its
//! autodiff wrapper; both passes are written with the backend's own operations, which its
//! fusion merges. In the tests it also runs on the CPU backend, where burn's LayerNorm
//! checks it (training on the CPU takes `crate::cpu`'s operations instead).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Slice, TensorData};

/// LayerNorm with its own backward pass, as a burn backend extension (see the module
/// documentation).
#[backend_extension(Cube: cfg(any(feature = "wgpu", feature = "cuda")), Flex: cfg(test), Autodiff)]
pub trait FusableNormOps: Backend {
    /// LayerNorm over the last dimension of `input`, with γ and β `[width]`.
    fn fusable_layer_norm(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        normalize::<Self>(input, gamma, beta, epsilon).out
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl FusableNormOps for burn::backend::Cube {}

#[cfg(test)]
impl FusableNormOps for burn::backend::Flex {}

/// LayerNorm's forward pass and what its backward pass keeps.
struct Normalized<B: Backend> {
    /// `x̂·γ + β`.
    out: FloatTensor<B>,
    /// `x̂ = (x − mean) / σ`, the shape of the input.
    normalized: FloatTensor<B>,
    /// `1/σ` per row, the input's shape with a last dimension of 1.
    inverse_deviation: FloatTensor<B>,
}

/// LayerNorm over the last dimension with backend `B`'s own operations: means as scaled
/// sums and the square as a product, which fusion merges into few kernels.
fn normalize<B: Backend>(
    input: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f32,
) -> Normalized<B> {
    let shape = input.shape();
    let last = shape.num_dims() - 1;
    let width = shape[last];
    let scale = 1.0 / width as f64;
    let row = row_shape(shape.num_dims(), width);
    let mean = B::float_mul_scalar(B::float_sum_dim(input.clone(), last), scale.into());
    let centered = B::float_sub(input, mean);
    let squares = B::float_mul(centered.clone(), centered.clone());
    let variance = B::float_mul_scalar(B::float_sum_dim(squares, last), scale.into());
    let inverse_deviation = B::float_recip(B::float_sqrt(B::float_add_scalar(
        variance,
        (epsilon as f64).into(),
    )));
    let normalized = B::float_mul(centered, inverse_deviation.clone());
    let out = B::float_add(
        B::float_mul(normalized.clone(), B::float_reshape(gamma, row.clone())),
        B::float_reshape(beta, row),
    );
    Normalized {
        out,
        normalized,
        inverse_deviation,
    }
}

/// The shape `[1, …, 1, width]` of rank `rank`, γ's and β's as the rows see them.
fn row_shape(rank: usize, width: usize) -> Shape {
    let mut dims = vec![1; rank];
    dims[rank - 1] = width;
    Shape::from(dims)
}

/// LayerNorm's backward pass to the input, γ and β (the parents in that order); keeps
/// `x̂` and `1/σ` as `[rows, width]` and `[rows, 1]`, and γ.
#[derive(Debug)]
struct LayerNormBackward;

/// What [`LayerNormBackward`] keeps: `x̂`, `1/σ` and γ.
type NormState<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

impl<B: Backend> Backward<B, 3> for LayerNormBackward {
    type State = NormState<B>;

    fn backward(self, ops: Ops<NormState<B>, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (normalized, inverse_deviation, gamma) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let shape = grad.shape();
        let [rows, width] = normalized.shape().dims();
        let grad = B::float_reshape(grad, Shape::new([rows, width]));
        let [input_node, gamma_node, beta_node] = ops.parents;
        let column_sums = |columns: FloatTensor<B>| {
            let count = columns.shape()[1];
            B::float_reshape(B::float_sum_dim(columns, 0), Shape::new([count]))
        };
        let products = || B::float_mul(grad.clone(), normalized.clone());
        match (gamma_node, beta_node) {
            (Some(gamma_node), Some(beta_node)) => {
                // Both column sums in one reduction over `[2, rows, width]`, `g·x̂` then `g`,
                // built by broadcasting (`g·(x̂·[1, 0] + [0, 1])`), which fusion reads into
                // the reduction; a concatenation would be kernels of its own.
                let device = grad.device();
                let pair = |values: [f32; 2]| {
                    B::float_from_data(TensorData::new(values.to_vec(), [2, 1, 1]), &device)
                };
                let lifted = |t: FloatTensor<B>| B::float_reshape(t, Shape::new([1, rows, width]));
                let stacked = B::float_mul(
                    lifted(grad.clone()),
                    B::float_add(
                        B::float_mul(lifted(normalized.clone()), pair([1.0, 0.0])),
                        pair([0.0, 1.0]),
                    ),
                );
                let sums = B::float_reshape(B::float_sum_dim(stacked, 1), Shape::new([2 * width]));
                let part = |range| B::float_slice(sums.clone(), &[Slice::from(range)]);
                grads.register::<B>(gamma_node.id, part(0..width));
                grads.register::<B>(beta_node.id, part(width..2 * width));
            }
            (Some(gamma_node), None) => grads.register::<B>(gamma_node.id, column_sums(products())),
            (None, Some(beta_node)) => grads.register::<B>(beta_node.id, column_sums(grad.clone())),
            (None, None) => {}
        }
        let Some(node) = input_node else {
            return;
        };
        let scale = 1.0 / width as f64;
        let scaled = B::float_mul(grad, B::float_reshape(gamma, row_shape(2, width)));
        let mean = B::float_mul_scalar(B::float_sum_dim(scaled.clone(), 1), scale.into());
        let along = B::float_mul(scaled.clone(), normalized.clone());
        let mean_along = B::float_mul_scalar(B::float_sum_dim(along, 1), scale.into());
        let centered = B::float_sub(
            B::float_sub(scaled, mean),
            B::float_mul(normalized, mean_along),
        );
        let input_grad = B::float_mul(centered, inverse_deviation);
        grads.register::<B>(node.id, B::float_reshape(input_grad, shape));
    }
}

impl<B: Backend, C: CheckpointStrategy> FusableNormOps for Autodiff<B, C> {
    fn fusable_layer_norm(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        let nodes = [input.node(), gamma.node(), beta.node()];
        let (input, gamma, beta) = (
            input.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
        );
        let Normalized {
            out,
            normalized,
            inverse_deviation,
        } = normalize::<B>(input, gamma.clone(), beta, epsilon);
        match LayerNormBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let shape = normalized.shape();
                let width = shape[shape.num_dims() - 1];
                let rows = shape.num_elements() / width;
                let state = (
                    B::float_reshape(normalized, Shape::new([rows, width])),
                    B::float_reshape(inverse_deviation, Shape::new([rows, 1])),
                    gamma,
                );
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}
