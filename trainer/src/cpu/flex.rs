//! The fused operations on burn's CPU backend without autodiff (inference), and the
//! conversions between its tensors and the kernels' slices.

use super::{FusedCpuOps, kernels};
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{Shape, TensorData};

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

/// The shape of `tensor`.
pub(super) fn shape(tensor: &FlexTensor) -> Shape {
    tensor.layout().shape().clone()
}

/// A tensor of `shape` holding `values`.
pub(super) fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl FusedCpuOps for Flex {
    fn fused_gelu(input: FlexTensor) -> FlexTensor {
        let input = contiguous(input);
        tensor(kernels::gelu(values(&input)), shape(&input))
    }

    fn fused_softmax(scores: FlexTensor, bias: FlexTensor, scale: f32) -> FlexTensor {
        let (scores, bias) = (contiguous(scores), contiguous(bias));
        let batch = shape(&bias)[0];
        let out = kernels::softmax(values(&scores), values(&bias), batch, scale);
        tensor(out, shape(&scores))
    }

    fn fused_layer_norm(
        input: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f32,
    ) -> FlexTensor {
        let (input, gamma, beta) = (contiguous(input), contiguous(gamma), contiguous(beta));
        let (out, _) = kernels::layer_norm(values(&input), values(&gamma), values(&beta), epsilon);
        tensor(out, shape(&input))
    }
}
