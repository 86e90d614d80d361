//! Fused operations for burn's CPU backend, with backward passes of their own: exact GELU,
//! linear layers (GELU included where one follows), the attention softmax (its scale and
//! key padding bias included), LayerNorm (with the residual connection before it), dropout,
//! matrix products into buffers of their own, and rounding to bf16 or f16 (products in
//! those formats are f32 products of rounded values, bf16 ones on the CPU's AMX tiles
//! where it has them); and AdamW's step, written over the parameter's and its moments'
//! own buffers.
//!
//! burn's autodiff builds softmax and LayerNorm from about ten primitive operations each,
//! every one a full pass over its tensor, and burn's CPU backend computes element-wise
//! operations (GELU's `erf` included) on one thread. Here each operation is one parallel
//! pass forward and one backward, its arithmetic in [`kernels`]. The operations are a burn
//! backend extension implemented for the CPU backend and its autodiff wrapper; on any other
//! device (and for dtypes other than f32) the functions below call burn's own operations,
//! except the linear layers and LayerNorm, which a GPU computes as `fusable` writes them.

mod adamw;
mod autodiff;
mod flex;
pub mod kernels;
mod product;

use crate::device::on_cpu_backend;
use crate::fusable;
pub use adamw::AdamWUpdate;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{DType, FloatDType, Tensor, TensorData, activation};
pub use kernels::{DropoutMask, NarrowFormat};
use std::sync::OnceLock;

/// The fused operations, as a burn backend extension for the CPU backend (`Flex`) and its
/// autodiff wrapper.
#[backend_extension(Flex, Autodiff)]
pub trait FusedCpuOps: Backend {
    /// Exact GELU, `x·Φ(x)`.
    fn fused_gelu(input: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Softmax over the last dimension of `scale·scores + bias`; `scores` is
    /// `[batch, heads, queries, keys]` and `bias` `[batch, keys]`, a constant.
    fn fused_softmax(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;
    /// `x·weight + bias` for `x` `[rows, d_in]`, `weight` `[d_in, d_out]` and `bias`
    /// `[d_out]`, then exact GELU where `then_gelu`. With a narrow format `operands`, the
    /// product is computed as tensor cores compute it and cast back to f32: `x` and
    /// `weight` rounded to the format (bf16 ones as the CPU's bf16 tiles read them, where
    /// it has AMX), the sums in f32, the result rounded to the format (before GELU; bf16
    /// ones as the tiles' sums are stored). The backward pass rounds as the casts' backward
    /// passes would: the gradient reaching the product, and the gradients to `x` and
    /// `weight`. The bias is added in f32: pass one rounded to the format.
    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        then_gelu: bool,
        operands: Option<NarrowFormat>,
    ) -> FloatTensor<Self>;
    /// `lhs · rhs` over the last two dimensions, for tensors whose other dimensions are
    /// equal; `operands` as for `fused_linear` (both sides, the result and the three
    /// gradients rounded).
    fn fused_matmul(
        lhs: FloatTensor<Self>,
        rhs: FloatTensor<Self>,
        operands: Option<NarrowFormat>,
    ) -> FloatTensor<Self>;
    /// LayerNorm over the last dimension.
    fn fused_layer_norm(
        input: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self>;
    /// LayerNorm over the last dimension of `input + residual` (tensors of one shape): a
    /// residual connection and the norm after it.
    fn fused_residual_layer_norm(
        input: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self>;
    /// `input` times the dropout mask `mask`.
    fn fused_dropout(input: FloatTensor<Self>, mask: DropoutMask) -> FloatTensor<Self>;
    /// `input` rounded to the nearest values of `format`, kept in f32: a cast to `format`
    /// and back, whose backward pass rounds the gradient the same way (as the casts' do).
    fn fused_round(input: FloatTensor<Self>, format: NarrowFormat) -> FloatTensor<Self>;
}

/// The optimizer's step on the CPU backend, as a burn backend extension. Optimizers work on
/// tensors without autodiff, so only the CPU backend itself implements it.
#[backend_extension(Flex)]
pub trait CpuOptimizerOps: Backend {
    /// AdamW's step for one parameter (see [`AdamWUpdate`]): the new parameter and moments,
    /// each written over its own buffer where the tensor is that buffer's sole owner.
    fn adamw_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        update: AdamWUpdate,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Whether the fused operations are on: unless `JIGSAW_CPU_FUSED_OPS=off`, which runs
/// burn's own operations instead (to compare the two in one build).
fn fused_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("JIGSAW_CPU_FUSED_OPS").map_or(true, |v| v != "off"))
}

/// Whether `tensor` is an f32 tensor of the CPU backend, which the fused operations take.
fn fused_applies<const D: usize>(tensor: &Tensor<D>) -> bool {
    tensor.dtype() == DType::F32 && on_cpu_backend(&tensor.device()) && fused_enabled()
}

/// Exact GELU, fused on the CPU backend.
pub fn gelu<const D: usize>(input: Tensor<D>) -> Tensor<D> {
    if !fused_applies(&input) {
        return activation::gelu(input);
    }
    Tensor::from_dispatch(<Dispatch as FusedCpuOps>::fused_gelu(input.into_dispatch()))
}

/// `linear` applied to `rows` (`[tokens, d_in]`), then exact GELU where `then_gelu`; fused
/// on the CPU backend, where the bias is added (and its gradient summed) on every thread
/// (on a GPU, as `fusable::linear` writes it for the GPU's own fusion).
pub fn linear(linear: &Linear, rows: Tensor<2>, then_gelu: bool) -> Tensor<2> {
    let bias = linear.bias.as_ref().filter(|_| fused_applies(&rows));
    let Some(bias) = bias else {
        let out = if on_cpu_backend(&rows.device()) {
            linear.forward(rows)
        } else {
            fusable::linear(linear, rows)
        };
        return if then_gelu {
            activation::gelu(out)
        } else {
            out
        };
    };
    Tensor::from_dispatch(<Dispatch as FusedCpuOps>::fused_linear(
        rows.into_dispatch(),
        linear.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
        then_gelu,
        None,
    ))
}

impl NarrowFormat {
    /// The format as burn's float type, to cast to.
    pub fn dtype(self) -> FloatDType {
        match self {
            NarrowFormat::Bf16 => FloatDType::BF16,
            NarrowFormat::F16 => FloatDType::F16,
        }
    }
}

/// `input` rounded to the nearest values of `format` and kept in f32, in one parallel pass
/// on the CPU backend; elsewhere a cast to `format` and back. Either way the backward pass
/// rounds the gradient as a cast's does.
pub fn round_to<const D: usize>(input: Tensor<D>, format: NarrowFormat) -> Tensor<D> {
    if !fused_applies(&input) {
        return input.cast(format.dtype()).cast(FloatDType::F32);
    }
    Tensor::from_dispatch(<Dispatch as FusedCpuOps>::fused_round(
        input.into_dispatch(),
        format,
    ))
}

/// `linear` applied to `rows` with its product in `format`, returned in f32, then exact
/// GELU (in f32) where `then_gelu`. On the CPU backend as a GPU's tensor cores compute
/// it: the input, weight and bias rounded to `format`, the products summed in f32, the
/// result rounded to `format` (burn's CPU backend converts narrow operands back to f32 for
/// its matrix product anyway, and its casts and copies made a bf16 step 1.7 times as long
/// as an f32 one); bf16 products run on AMX where the CPU has it, f32 ones otherwise.
/// Elsewhere through burn's casts.
pub fn narrow_linear(
    linear: &Linear,
    rows: Tensor<2>,
    format: NarrowFormat,
    then_gelu: bool,
) -> Tensor<2> {
    let in_f32 = linear.bias.as_ref().filter(|_| fused_applies(&rows));
    let Some(bias) = in_f32 else {
        let dtype = format.dtype();
        let out = burn::tensor::module::linear(
            rows.cast(dtype),
            linear.weight.val().cast(dtype),
            linear.bias.as_ref().map(|bias| bias.val().cast(dtype)),
        )
        .cast(FloatDType::F32);
        return if then_gelu { gelu(out) } else { out };
    };
    Tensor::from_dispatch(<Dispatch as FusedCpuOps>::fused_linear(
        rows.into_dispatch(),
        linear.weight.val().into_dispatch(),
        round_to(bias.val(), format).into_dispatch(),
        then_gelu,
        Some(format),
    ))
}

/// `lhs · rhs` with the product in `format`, returned in f32: computed as [`narrow_linear`]
/// computes its product.
pub fn narrow_matmul<const D: usize>(
    lhs: Tensor<D>,
    rhs: Tensor<D>,
    format: NarrowFormat,
) -> Tensor<D> {
    if !fused_applies(&lhs) || rhs.dtype() != DType::F32 {
        let dtype = format.dtype();
        return lhs
            .cast(dtype)
            .matmul(rhs.cast(dtype))
            .cast(FloatDType::F32);
    }
    product(lhs, rhs, Some(format))
}

/// `lhs · rhs` over the last two dimensions (the attention's products, LoRA's), computed
/// straight into a buffer of its own on the CPU backend when the other dimensions are
/// equal (burn's product broadcasts them otherwise).
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    if !fused_applies(&lhs) || rhs.dtype() != DType::F32 {
        return lhs.matmul(rhs);
    }
    product(lhs, rhs, None)
}

/// `lhs · rhs` of f32 tensors of the CPU backend (in the format `operands`, if any, the
/// result rounded to it: see `FusedCpuOps::fused_linear`), through burn's product of the
/// operands (rounded to the format) where the dimensions before the last two differ.
fn product<const D: usize>(
    lhs: Tensor<D>,
    rhs: Tensor<D>,
    operands: Option<NarrowFormat>,
) -> Tensor<D> {
    if lhs.dims()[..D - 2] != rhs.dims()[..D - 2] {
        return match operands {
            Some(format) => round_to(round_to(lhs, format).matmul(round_to(rhs, format)), format),
            None => lhs.matmul(rhs),
        };
    }
    Tensor::from_dispatch(<Dispatch as FusedCpuOps>::fused_matmul(
        lhs.into_dispatch(),
        rhs.into_dispatch(),
        operands,
    ))
}

/// The attention probabilities `softmax(scores / divisor + bias)` over the keys, for
/// `scores` `[batch, heads, queries, keys]` and a constant key `bias` `[batch, 1, 1, keys]`
/// (0 for real keys, a large negative number for padding), fused on the CPU backend.
pub fn attention_softmax(scores: Tensor<4>, divisor: f64, bias: &Tensor<4>) -> Tensor<4> {
    if !fused_applies(&scores) || bias.dtype() != DType::F32 {
        return activation::softmax(scores.div_scalar(divisor) + bias.clone(), 3);
    }
    let [batch, _, _, keys] = scores.dims();
    let bias = bias.clone().reshape([batch, keys]);
    Tensor::from_dispatch(<Dispatch as FusedCpuOps>::fused_softmax(
        scores.into_dispatch(),
        bias.into_dispatch(),
        (1.0 / divisor) as f32,
    ))
}

/// `norm` applied to `input`, fused on the CPU backend (on a GPU, as `fusable::layer_norm`
/// writes it for the GPU's own fusion). `epsilon` must be the one `norm` was configured
/// with (burn keeps it private).
pub fn layer_norm<const D: usize>(norm: &LayerNorm, epsilon: f64, input: Tensor<D>) -> Tensor<D> {
    if !on_cpu_backend(&input.device()) {
        return fusable::layer_norm(norm, epsilon, input);
    }
    let Some(beta) = norm.beta.as_ref() else {
        return norm.forward(input);
    };
    if !fused_applies(&input) {
        return norm.forward(input);
    }
    Tensor::from_dispatch(<Dispatch as FusedCpuOps>::fused_layer_norm(
        input.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        epsilon as f32,
    ))
}

/// LayerNorm of `input + residual`, `norm` applied after a residual connection; fused on
/// the CPU backend, which then never holds the sum (on a GPU, as [`layer_norm`]).
/// `epsilon` as for [`layer_norm`].
pub fn residual_layer_norm<const D: usize>(
    norm: &LayerNorm,
    epsilon: f64,
    input: Tensor<D>,
    residual: Tensor<D>,
) -> Tensor<D> {
    if !on_cpu_backend(&input.device()) {
        return fusable::layer_norm(norm, epsilon, input + residual);
    }
    let beta = norm.beta.as_ref().filter(|_| {
        fused_applies(&input) && residual.dtype() == DType::F32 && input.dims() == residual.dims()
    });
    let Some(beta) = beta else {
        return norm.forward(input + residual);
    };
    Tensor::from_dispatch(<Dispatch as FusedCpuOps>::fused_residual_layer_norm(
        input.into_dispatch(),
        residual.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        epsilon as f32,
    ))
}

/// Whether [`adamw_step`] takes `param` and `grad`: f32 tensors of the CPU backend without
/// autodiff (as an optimizer receives them).
pub fn adamw_applies<const D: usize>(param: &Tensor<D>, grad: &Tensor<D>) -> bool {
    let device = param.device();
    on_cpu_backend(&device)
        && !device.is_autodiff()
        && param.dtype() == DType::F32
        && grad.dtype() == DType::F32
}

/// AdamW's step for `param`, given its gradient and, after the first step, its moments
/// (zero before): returns the new parameter and moments `(param, moment_1, moment_2)`.
/// One parallel pass over buffers the tensors already own, with no copy in or out, for
/// tensors that [`adamw_applies`] to (it panics on others).
pub fn adamw_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
    update: AdamWUpdate,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    assert!(
        adamw_applies(&param, &grad),
        "the CPU AdamW step takes f32 CPU tensors without autodiff"
    );
    let (moment_1, moment_2) = moments.unwrap_or_else(|| (param.zeros_like(), param.zeros_like()));
    let (param, moment_1, moment_2) = <Dispatch as CpuOptimizerOps>::adamw_step(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        update,
    );
    (
        Tensor::from_dispatch(param),
        Tensor::from_dispatch(moment_1),
        Tensor::from_dispatch(moment_2),
    )
}

/// `input` times the dropout mask `mask` (kept elements scaled by `1/keep`, dropped ones
/// 0), in one parallel pass on the CPU backend, whose backward pass draws nothing again:
/// it keeps one bit per element. Elsewhere the mask's factors become a tensor to multiply
/// by, with the same result.
pub fn dropout<const D: usize>(input: Tensor<D>, mask: DropoutMask) -> Tensor<D> {
    if !fused_applies(&input) {
        let shape = input.shape();
        let factors = mask.factors(shape.num_elements());
        let device = input.device();
        return input * Tensor::<D>::from_data(TensorData::new(factors, shape), &device);
    }
    Tensor::from_dispatch(<Dispatch as FusedCpuOps>::fused_dropout(
        input.into_dispatch(),
        mask,
    ))
}

#[cfg(test)]
mod tests;
