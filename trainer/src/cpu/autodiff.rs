//! The fused operations on burn's CPU backend under autodiff: each forward pass keeps what
//! its hand-written backward pass needs.

use super::flex::{
    contiguous, dropped, layer_norm, len, linear, narrowed, owned, rounded, shape, values,
    values_mut,
};
use super::product::{Matrices, product, rounds_operands, tensor, unflipped};
use super::{DropoutMask, FusedCpuOps, NarrowFormat, kernels};
use burn::backend::Autodiff;
use burn::backend::Flex;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::tensor::Shape;

/// GELU's backward pass; keeps GELU's slope at the input.
#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = Vec<f32>;

    fn backward(self, ops: Ops<Vec<f32>, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let slope = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            let mut grad = owned(grad);
            kernels::multiply(values_mut(&mut grad), &slope);
            grad
        });
    }
}

/// The backward pass of rounding to a narrow format: the gradient rounded to it, as the
/// backward pass of a cast to the format and back rounds it.
#[derive(Debug)]
struct RoundBackward;

impl Backward<Flex, 1> for RoundBackward {
    type State = NarrowFormat;

    fn backward(self, ops: Ops<NarrowFormat, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let format = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| rounded(grad, format));
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
/// input is, GELU's slope where there is GELU, and the format of the operands (the
/// gradient's products take the forward product's format, the gradient reaching the
/// product rounded to it, as the backward pass of a cast to it rounds it).
#[derive(Debug)]
struct LinearBackward;

/// What a linear layer's backward pass keeps: the input, the weight, GELU's slope and the
/// operands' format.
type LinearState = (
    Option<FlexTensor>,
    Option<FlexTensor>,
    Option<Vec<f32>>,
    Option<NarrowFormat>,
);

impl Backward<Flex, 3> for LinearBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, weight, gelu_slope, operands) = ops.state;
        let mut grad = grads.consume::<Flex>(&ops.node);
        if let Some(slope) = gelu_slope {
            grad = owned(grad);
            kernels::multiply(values_mut(&mut grad), &slope);
        }
        let [grad] = narrowed([grad], operands);
        let [x_node, weight_node, bias_node] = ops.parents;
        if let Some(node) = bias_node {
            let grad = contiguous(grad.clone());
            let width = shape(&grad)[1];
            // Rounded to the format as read where `narrowed` left it to the products, which
            // round it as they pack it.
            let rounded_as_read = operands.filter(|_| rounds_operands(operands));
            let sums = kernels::sum_rows(values(&grad), width, rounded_as_read);
            grads.register::<Flex>(node.id, tensor(sums, Shape::new([width])));
        }
        let ids = [x_node.map(|node| node.id), weight_node.map(|node| node.id)];
        register_product_grads(grads, grad, ids, [x, weight], operands);
    }
}

/// Registers the gradients of `lhs · rhs` (matrix by matrix) from `grad`, the product's:
/// `lhsᵀ · grad` for the right side's node and `grad · rhsᵀ` for the left side's, where the
/// node needs one and the other side was kept for it. With a narrow format `operands`,
/// the products' operands are its values (`grad` as [`narrowed`] leaves it) and each
/// gradient going out is rounded to it by its product, as a cast's backward pass rounds it.
fn register_product_grads(
    grads: &mut Gradients,
    grad: FlexTensor,
    [lhs_node, rhs_node]: [Option<NodeId>; 2],
    [lhs, rhs]: [Option<FlexTensor>; 2],
    operands: Option<NarrowFormat>,
) {
    let grad = unflipped(grad);
    if let (Some(node), Some(lhs)) = (rhs_node, lhs) {
        let lhs_t = Matrices::of(&lhs).transposed();
        let product = product(&lhs_t, &Matrices::of(&grad), None, operands);
        grads.register::<Flex>(node, product);
    }
    if let (Some(node), Some(rhs)) = (lhs_node, rhs) {
        let rhs_t = Matrices::of(&rhs).transposed();
        let product = product(&Matrices::of(&grad), &rhs_t, None, operands);
        grads.register::<Flex>(node, product);
    }
}

/// A matrix product's backward pass (batches of matrices, as the attention's); keeps the
/// left side where the right needs its gradient, the right where the left does, and the
/// operands' format (as [`LinearBackward`] does).
#[derive(Debug)]
struct MatmulBackward;

impl Backward<Flex, 2> for MatmulBackward {
    type State = (Option<FlexTensor>, Option<FlexTensor>, Option<NarrowFormat>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (lhs, rhs, operands) = ops.state;
        let [grad] = narrowed([grads.consume::<Flex>(&ops.node)], operands);
        let [lhs_node, rhs_node] = ops.parents;
        let ids = [lhs_node.map(|node| node.id), rhs_node.map(|node| node.id)];
        register_product_grads(grads, grad, ids, [lhs, rhs], operands);
    }
}

/// LayerNorm's backward pass to the input (and, with `N` = 4, the residual added to it),
/// γ and β, the parents in that order; keeps the normalized rows, their inverse standard
/// deviations and γ.
#[derive(Debug)]
struct LayerNormBackward<const N: usize>;

impl<const N: usize> Backward<Flex, N> for LayerNormBackward<N> {
    type State = (kernels::NormalizedRows, FlexTensor);

    fn backward(
        self,
        ops: Ops<(kernels::NormalizedRows, FlexTensor), N>,
        grads: &mut Gradients,
        _: &mut Checkpointer,
    ) {
        let (saved, gamma) = ops.state;
        let mut grad = owned(grads.consume::<Flex>(&ops.node));
        let (dgamma, dbeta) =
            kernels::layer_norm_backward(values_mut(&mut grad), &saved, values(&gamma));
        let (summands, parameters) = ops.parents.split_at(N - 2);
        if let Some(node) = &parameters[0] {
            grads.register::<Flex>(node.id, tensor(dgamma, shape(&gamma)));
        }
        if let Some(node) = &parameters[1] {
            grads.register::<Flex>(node.id, tensor(dbeta, shape(&gamma)));
        }
        // The input and the residual get the same gradient, their sum's.
        for node in summands.iter().flatten() {
            grads.register::<Flex>(node.id, grad.clone());
        }
    }
}

/// Dropout's backward pass: the gradient times the same mask; keeps the mask's bits.
#[derive(Debug)]
struct DropoutBackward;

impl Backward<Flex, 1> for DropoutBackward {
    type State = (DropoutMask, kernels::KeepBits);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (mask, bits) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            dropped(grad, &mask, &bits)
        });
    }
}

/// LayerNorm of `x`, or of `x + residual`, under autodiff; `nodes` are the parents of
/// [`LayerNormBackward`].
fn tracked_layer_norm<C: CheckpointStrategy, const N: usize>(
    nodes: [NodeGuard; N],
    (x, residual): (FlexTensor, Option<FlexTensor>),
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f32,
) -> FloatTensor<Autodiff<Flex, C>> {
    let (out, saved, gamma) = layer_norm(x, residual, gamma, beta, epsilon);
    match LayerNormBackward::<N>
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((saved, gamma), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

impl<C: CheckpointStrategy> FusedCpuOps for Autodiff<Flex, C> {
    fn fused_gelu(input: FloatTensor<Self>) -> FloatTensor<Self> {
        let node = input.node();
        let mut out = owned(input.into_primitive());
        let slope = kernels::gelu_with_slope(values_mut(&mut out));
        match GeluBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(slope, out),
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
        operands: Option<NarrowFormat>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        // The weight's gradient needs the input, the input's the weight: keep only those
        // (a LoRA run's frozen weights leave the input unkept, as burn's own product does).
        let (keep_x, keep_weight) = (weight.is_tracked(), x.is_tracked());
        let (x, weight, out) = linear(
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
            operands,
        );
        let mut out = owned(out);
        let gelu_slope = then_gelu.then(|| kernels::gelu_with_slope(values_mut(&mut out)));
        match LinearBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (
                    keep_x.then_some(x),
                    keep_weight.then_some(weight),
                    gelu_slope,
                    operands,
                );
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_matmul(
        lhs: FloatTensor<Self>,
        rhs: FloatTensor<Self>,
        operands: Option<NarrowFormat>,
    ) -> FloatTensor<Self> {
        let nodes = [lhs.node(), rhs.node()];
        // Each side's gradient needs the other side: keep only those needed.
        let (keep_lhs, keep_rhs) = (rhs.is_tracked(), lhs.is_tracked());
        let primitives = [lhs.into_primitive(), rhs.into_primitive()];
        let [lhs, rhs] = narrowed(primitives, operands).map(unflipped);
        let out = product(&Matrices::of(&lhs), &Matrices::of(&rhs), None, operands);
        match MatmulBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (keep_lhs.then_some(lhs), keep_rhs.then_some(rhs), operands);
                prep.finish(state, out)
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
        let x = input.into_primitive();
        let (gamma, beta) = (gamma.into_primitive(), beta.into_primitive());
        tracked_layer_norm::<C, 3>(nodes, (x, None), gamma, beta, epsilon)
    }

    fn fused_residual_layer_norm(
        input: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        let nodes = [input.node(), residual.node(), gamma.node(), beta.node()];
        let summands = (input.into_primitive(), Some(residual.into_primitive()));
        let (gamma, beta) = (gamma.into_primitive(), beta.into_primitive());
        tracked_layer_norm::<C, 4>(nodes, summands, gamma, beta, epsilon)
    }

    fn fused_dropout(input: FloatTensor<Self>, mask: DropoutMask) -> FloatTensor<Self> {
        let node = input.node();
        let x = input.into_primitive();
        let bits = mask.bits(len(&x));
        let out = dropped(x, &mask, &bits);
        match DropoutBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((mask, bits), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_round(input: FloatTensor<Self>, format: NarrowFormat) -> FloatTensor<Self> {
        let node = input.node();
        let out = rounded(input.into_primitive(), format);
        match RoundBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(format, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}
