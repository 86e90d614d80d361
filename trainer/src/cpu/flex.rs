//! The fused operations on burn's CPU backend without autodiff (inference), the optimizer's
//! step, and the conversions between the backend's tensors and the kernels' slices.

use super::product::{Matrices, product, rounds_operands, tensor, unflipped};
use super::{AdamWUpdate, CpuOptimizerOps, DropoutMask, FusedCpuOps, NarrowFormat, kernels};
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::Shape;

/// `tensor` with its elements in order in one slice.
pub(super) fn contiguous(tensor: FlexTensor) -> FlexTensor {
    if tensor.layout().contiguous_offsets().is_some() {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

/// The f32 elements of a tensor from [`contiguous`].
pub(super) fn values(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .expect("the fused CPU operations take contiguous f32 tensors")
}

/// `tensor` as the sole owner of a buffer holding exactly its elements in order, so that an
/// operation can write its result over them (`Ok`, the usual case for a fresh
/// intermediate), or else contiguous but shared (`Err`).
fn exclusive(tensor: FlexTensor) -> Result<FlexTensor, FlexTensor> {
    let mut tensor = contiguous(tensor);
    let elements = tensor.layout().num_elements();
    let whole = tensor.layout().contiguous_offsets() == Some((0, elements));
    if whole
        && tensor
            .try_storage_mut::<f32>()
            .is_some_and(|s| s.len() == elements)
    {
        Ok(tensor)
    } else {
        Err(tensor)
    }
}

/// `tensor` as the sole owner of a buffer holding exactly its elements in order, so that an
/// operation can write its result over them: the tensor itself where it already is one,
/// a copy otherwise.
pub(super) fn owned(tensor: FlexTensor) -> FlexTensor {
    exclusive(tensor)
        .unwrap_or_else(|shared| self::tensor(values(&shared).to_vec(), shape(&shared)))
}

/// `input` times `mask`, whose bits for it are `bits`: over `input` where it is the sole
/// owner of its buffer, into a new buffer otherwise.
pub(super) fn dropped(input: FlexTensor, mask: &DropoutMask, bits: &[u64]) -> FlexTensor {
    match exclusive(input) {
        Ok(mut input) => {
            mask.apply(bits, values_mut(&mut input));
            input
        }
        Err(shared) => tensor(mask.applied(bits, values(&shared)), shape(&shared)),
    }
}

/// `tensor` rounded to `format`'s values: over `tensor` where it is the sole owner of its
/// buffer, into a copy otherwise.
pub(super) fn rounded(tensor: FlexTensor, format: NarrowFormat) -> FlexTensor {
    let mut out = owned(tensor);
    kernels::round_to(values_mut(&mut out), format);
    out
}

/// The operands of a product in the format `operands` (see `FusedCpuOps::fused_linear`):
/// rounded to it, unless the product rounds them itself as it packs them.
pub(super) fn narrowed<const N: usize>(
    tensors: [FlexTensor; N],
    operands: Option<NarrowFormat>,
) -> [FlexTensor; N] {
    match operands.filter(|_| !rounds_operands(operands)) {
        Some(format) => tensors.map(|tensor| rounded(tensor, format)),
        None => tensors,
    }
}

/// The number of elements of `tensor`.
pub(super) fn len(tensor: &FlexTensor) -> usize {
    tensor.layout().num_elements()
}

/// The f32 elements of a tensor from [`owned`], to write over.
pub(super) fn values_mut(tensor: &mut FlexTensor) -> &mut [f32] {
    tensor
        .try_storage_mut::<f32>()
        .expect("the tensor came from `owned`")
}

/// The shape of `tensor`.
pub(super) fn shape(tensor: &FlexTensor) -> Shape {
    tensor.layout().shape().clone()
}

/// `x · weight + bias` for a 2-D `x`, computed in the format `operands` where it is given
/// (`x` and `weight` rounded to it as [`narrowed`] says, the result rounded to it): `x`
/// and `weight` as the linear layer's backward pass keeps them, and the result.
pub(super) fn linear(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    operands: Option<NarrowFormat>,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let [x, weight] = narrowed([x, weight], operands);
    let (x, weight, bias) = (unflipped(x), unflipped(weight), contiguous(bias));
    let (x_shape, weight_shape, bias_shape) = (shape(&x), shape(&weight), shape(&bias));
    assert!(
        x_shape.num_dims() == 2 && weight_shape.num_dims() == 2 && bias_shape.num_dims() == 1,
        "fused linear: input {x_shape:?}, weight {weight_shape:?} and bias {bias_shape:?} \
         are not two matrices and a vector"
    );
    let out = product(
        &Matrices::of(&x),
        &Matrices::of(&weight),
        Some(values(&bias)),
        operands,
    );
    (x, weight, out)
}

/// Panics unless `gamma` and `beta` have one element per entry of `input`'s last dimension.
pub(super) fn check_norm(input: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor) {
    let (input, gamma, beta) = (shape(input), shape(gamma), shape(beta));
    let width = input.last().copied().unwrap_or(0);
    assert!(
        gamma.num_dims() == 1 && gamma[0] == width && beta.num_dims() == 1 && beta[0] == width,
        "fused LayerNorm: input {input:?}, gamma {gamma:?} and beta {beta:?} do not match"
    );
}

/// Panics unless `residual` has `input`'s shape.
pub(super) fn check_residual(input: &FlexTensor, residual: &FlexTensor) {
    let (input, residual) = (shape(input), shape(residual));
    assert!(
        input == residual,
        "fused LayerNorm: input {input:?} and residual {residual:?} differ in shape"
    );
}

/// LayerNorm of `input`, or of `input + residual`: the output, what the backward pass
/// needs, and γ as that keeps it.
pub(super) fn layer_norm(
    input: FlexTensor,
    residual: Option<FlexTensor>,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f32,
) -> (FlexTensor, kernels::NormalizedRows, FlexTensor) {
    let (input, residual) = (contiguous(input), residual.map(contiguous));
    let (gamma, beta) = (contiguous(gamma), contiguous(beta));
    check_norm(&input, &gamma, &beta);
    if let Some(residual) = &residual {
        check_residual(&input, residual);
    }
    let (out, saved) = kernels::layer_norm(
        values(&input),
        residual.as_ref().map(values),
        values(&gamma),
        values(&beta),
        epsilon,
    );
    (tensor(out, shape(&input)), saved, gamma)
}

impl FusedCpuOps for Flex {
    fn fused_gelu(input: FlexTensor) -> FlexTensor {
        let mut out = owned(input);
        kernels::gelu(values_mut(&mut out));
        out
    }

    fn fused_softmax(scores: FlexTensor, bias: FlexTensor, scale: f32) -> FlexTensor {
        let (mut scores, bias) = (owned(scores), contiguous(bias));
        let (scores_shape, bias_shape) = (shape(&scores), shape(&bias));
        assert!(
            scores_shape.num_dims() == 4
                && bias_shape.num_dims() == 2
                && scores_shape[0] == bias_shape[0]
                && scores_shape[3] == bias_shape[1],
            "fused softmax: scores {scores_shape:?} and bias {bias_shape:?} do not match"
        );
        let batch = bias_shape[0];
        kernels::softmax(values_mut(&mut scores), values(&bias), batch, scale);
        scores
    }

    fn fused_linear(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        then_gelu: bool,
        operands: Option<NarrowFormat>,
    ) -> FlexTensor {
        let (_, _, out) = linear(x, weight, bias, operands);
        let mut out = owned(out);
        if then_gelu {
            kernels::gelu(values_mut(&mut out));
        }
        out
    }

    fn fused_matmul(
        lhs: FlexTensor,
        rhs: FlexTensor,
        operands: Option<NarrowFormat>,
    ) -> FlexTensor {
        let [lhs, rhs] = narrowed([lhs, rhs], operands).map(unflipped);
        product(&Matrices::of(&lhs), &Matrices::of(&rhs), None, operands)
    }

    fn fused_layer_norm(
        input: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f32,
    ) -> FlexTensor {
        layer_norm(input, None, gamma, beta, epsilon).0
    }

    fn fused_residual_layer_norm(
        input: FlexTensor,
        residual: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f32,
    ) -> FlexTensor {
        layer_norm(input, Some(residual), gamma, beta, epsilon).0
    }

    fn fused_dropout(input: FlexTensor, mask: DropoutMask) -> FlexTensor {
        let bits = mask.bits(len(&input));
        dropped(input, &mask, &bits)
    }

    fn fused_round(input: FlexTensor, format: NarrowFormat) -> FlexTensor {
        rounded(input, format)
    }
}

impl CpuOptimizerOps for Flex {
    fn adamw_step(
        param: FlexTensor,
        grad: FlexTensor,
        moment_1: FlexTensor,
        moment_2: FlexTensor,
        update: AdamWUpdate,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (mut param, grad) = (owned(param), contiguous(grad));
        let (mut moment_1, mut moment_2) = (owned(moment_1), owned(moment_2));
        let (elements, param_shape) = (len(&param), shape(&param));
        for (what, other) in [
            ("gradient", &grad),
            ("first moment", &moment_1),
            ("second moment", &moment_2),
        ] {
            assert!(
                len(other) == elements,
                "AdamW: the {what} {:?} does not match the parameter {param_shape:?}",
                shape(other)
            );
        }
        update.apply(
            values_mut(&mut param),
            values(&grad),
            values_mut(&mut moment_1),
            values_mut(&mut moment_2),
        );
        (param, moment_1, moment_2)
    }
}
