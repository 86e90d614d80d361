//! Global gradient-norm clipping, kept on the device: the norm and the scale stay tensors,
//! so clipping never waits for a read-back.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// The factor that scales gradients whose global L2 norm is `norm` down to at most
/// `max_norm`: min(1, max_norm / (norm + 1e-6)), kept on the device.
pub fn clip_scale(norm: Tensor<1>, max_norm: f64) -> Tensor<1> {
    norm.add_scalar(1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0)
}

/// Scales the gradients of `model`'s trainable parameters so that their global L2 norm is
/// at most `max_norm`, without leaving the device: the scale is [`clip_scale`] of the norm.
/// Returns the norm before clipping, still on the device (`None` when nothing is trainable).
pub fn clip_global_norm<M: Module>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> Option<Tensor<1>> {
    let mut ids = TrainableIds::default();
    model.visit(&mut ids);
    let mut squares: Vec<Tensor<1>> = Vec::new();
    for id in &ids.vectors {
        if let Some(g) = grads.get::<1>(*id) {
            squares.push(g.square().sum());
        }
    }
    for id in &ids.matrices {
        if let Some(g) = grads.get::<2>(*id) {
            squares.push(g.square().sum());
        }
    }
    if squares.is_empty() {
        return None;
    }
    let norm = Tensor::cat(squares, 0).sum().sqrt();
    let scale = clip_scale(norm.clone(), max_norm);
    for id in &ids.vectors {
        if let Some(g) = grads.remove::<1>(*id) {
            grads.register(*id, g.mul(scale.clone()));
        }
    }
    let scale_2d = scale.reshape([1, 1]);
    for id in &ids.matrices {
        if let Some(g) = grads.remove::<2>(*id) {
            grads.register(*id, g.mul(scale_2d.clone()));
        }
    }
    Some(norm)
}

/// Collects the ids of every trainable float parameter (LoRA factors included), by rank.
#[derive(Default)]
struct TrainableIds {
    vectors: Vec<ParamId>,
    matrices: Vec<ParamId>,
}

impl ModuleVisitor for TrainableIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match D {
            1 => self.vectors.push(param.id),
            2 => self.matrices.push(param.id),
            _ => {}
        }
        if let Some(adapter) = param.adapter() {
            self.matrices.push(adapter.a.id);
            self.matrices.push(adapter.b.id);
        }
    }
}
