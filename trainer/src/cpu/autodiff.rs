//! The fused operations on burn's CPU backend under autodiff: each forward pass keeps what
//! its hand-written backward pass needs.

use super::flex::{check_norm, contiguous, linear, owned, shape, values, values_mut};
use super::product::{Matrices, product, tensor, unflipped};
use super::{FusedCpuOps, kernels};
use burn::backend::Autodiff;
use burn::backend::Flex;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::tensor::Shape;

/// GELU's backward pass; keeps the input.
#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let input = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let mut grad = owned(grad);
            kernels::gelu_backward(values(&input), values_mut(&mut grad));
            grad
        });
    }
}

/// The attention softmax's backward pass to the scores; keeps the probabilities and the
/// scale (the bias is a constant).
#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    type State = (FlexTensor, f32);

    fn backward(self, ops: Ops<(FlexTensor, f32), 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (probabilities, scale) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let mut grad = owned(grad);
            let shape = shape(&probabilities);
            let width = shape[shape.num_dims() - 1];
            kernels::softmax_backward(values(&probabilities), values_mut(&mut grad), width, scale);
            grad
        });
    }
}

/// A linear layer's backward pass (through its GELU, where it has one) to the input, the
/// weight and the bias; keeps the input where the weight is tracked, the weight where the
/// input is, and, with GELU, GELU's input.
#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    type State = (Option<FlexTensor>, Option<FlexTensor>, Option<FlexTensor>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, weight, before_gelu) = ops.state;
        let mut grad = grads.consume::<Flex>(&ops.node);
        if let Some(before_gelu) = before_gelu {
            grad = owned(grad);
            kernels::gelu_backward(values(&before_gelu), values_mut(&mut grad));
        }
        let [x_node, weight_node, bias_node] = ops.parents;
        if let Some(node) = bias_node {
            let grad = contiguous(grad.clone());
            let width = shape(&grad)[1];
            let sums = kernels::sum_rows(values(&grad), width);
            grads.register::<Flex>(node.id, tensor(sums, Shape::new([width])));
        }
        let ids = [x_node.map(|node| node.id), weight_node.map(|node| node.id)];
        register_product_grads(grads, grad, ids, [x, weight]);
    }
}

/// Registers the gradients of `lhs · rhs` (matrix by matrix) from `grad`, the product's:
/// `lhsᵀ · grad` for the right side's node and `grad · rhsᵀ` for the left side's, where the
/// node needs one and the other side was kept for it.
fn register_product_grads(
    grads: &mut Gradients,
    grad: FlexTensor,
    [lhs_node, rhs_node]: [Option<NodeId>; 2],
    [lhs, rhs]: [Option<FlexTensor>; 2],
) {
    let grad = unflipped(grad);
    if let (Some(node), Some(lhs)) = (rhs_node, lhs) {
        let lhs_t = Matrices::of(&lhs).transposed();
        grads.register::<Flex>(node, product(&lhs_t, &Matrices::of(&grad), None));
    }
    if let (Some(node), Some(rhs)) = (lhs_node, rhs) {
        let rhs_t = Matrices::of(&rhs).transposed();
        grads.register::<Flex>(node, product(&Matrices::of(&grad), &rhs_t, None));
    }
}

/// A matrix product's backward pass (batches of matrices, as the attention's); keeps the
/// left side where the right needs its gradient, and the right where the left does.
#[derive(Debug)]
struct MatmulBackward;

impl Backward<Flex, 2> for MatmulBackward {
    type State = (Option<FlexTensor>, Option<FlexTensor>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (lhs, rhs) = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let [lhs_node, rhs_node] = ops.parents;
        let ids = [lhs_node.map(|node| node.id), rhs_node.map(|node| node.id)];
        register_product_grads(grads, grad, ids, [lhs, rhs]);
    }
}

/// LayerNorm's backward pass to the input, γ and β; keeps the normalized rows, their
/// inverse standard deviations and γ.
#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    type State = (kernels::NormalizedRows, FlexTensor);

    fn backward(
        self,
        ops: Ops<(kernels::NormalizedRows, FlexTensor), 3>,
        grads: &mut Gradients,
        _: &mut Checkpointer,
    ) {
        let (saved, gamma) = ops.state;
        let mut grad = owned(grads.consume::<Flex>(&ops.node));
        let (dgamma, dbeta) =
            kernels::layer_norm_backward(values_mut(&mut grad), &saved, values(&gamma));
        let [input, gamma_node, beta_node] = ops.parents;
        if let Some(node) = input {
            grads.register::<Flex>(node.id, grad);
        }
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, tensor(dgamma, shape(&gamma)));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, tensor(dbeta, shape(&gamma)));
        }
    }
}

impl<C: CheckpointStrategy> FusedCpuOps for Autodiff<Flex, C> {
    fn fused_gelu(input: FloatTensor<Self>) -> FloatTensor<Self> {
        let node = input.node();
        let x = contiguous(input.into_primitive());
        let out = tensor(kernels::gelu(values(&x)), shape(&x));
        match GeluBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(x, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_softmax(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        // The bias is a constant (the padding mask): it gets no gradient.
        debug_assert!(
            !bias.is_tracked(),
            "the attention bias must not need a gradient"
        );
        let node = scores.node();
        let out = Flex::fused_softmax(scores.into_primitive(), bias.into_primitive(), scale);
        match SoftmaxBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((out.clone(), scale), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        then_gelu: bool,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        // The weight's gradient needs the input, the input's the weight: keep only those
        // (a LoRA run's frozen weights leave the input unkept, as burn's own product does).
        let (keep_x, keep_weight) = (weight.is_tracked(), x.is_tracked());
        let (x, weight, affine) = linear(
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        );
        let (out, before_gelu) = if then_gelu {
            let out = tensor(kernels::gelu(values(&affine)), shape(&affine));
            (out, Some(affine))
        } else {
            (affine, None)
        };
        match LinearBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (
                    keep_x.then_some(x),
                    keep_weight.then_some(weight),
                    before_gelu,
                );
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        let nodes = [lhs.node(), rhs.node()];
        // Each side's gradient needs the other side: keep only those needed.
        let (keep_lhs, keep_rhs) = (rhs.is_tracked(), lhs.is_tracked());
        let (lhs, rhs) = (
            unflipped(lhs.into_primitive()),
            unflipped(rhs.into_primitive()),
        );
        let out = product(&Matrices::of(&lhs), &Matrices::of(&rhs), None);
        match MatmulBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish((keep_lhs.then_some(lhs), keep_rhs.then_some(rhs)), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_layer_norm(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        let nodes = [input.node(), gamma.node(), beta.node()];
        let x = contiguous(input.into_primitive());
        let gamma = contiguous(gamma.into_primitive());
        let beta = contiguous(beta.into_primitive());
        check_norm(&x, &gamma, &beta);
        let (out, saved) = kernels::layer_norm(values(&x), values(&gamma), values(&beta), epsilon);
        let out = tensor(out, shape(&x));
        match LayerNormBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((saved, gamma), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}
