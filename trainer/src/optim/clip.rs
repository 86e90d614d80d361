//! Global gradient-norm clipping, kept on the device: the norm and the scale stay tensors,
//! so clipping never waits for a read-back. Also the global norm alone and a plain scaling
//! of every gradient, which undo the loss scale of f16 runs.

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
    let ids = TrainableIds::of(model);
    let norm = ids.norm(grads)?;
    ids.scale(grads, clip_scale(norm.clone(), max_norm));
    Some(norm)
}

/// The global L2 norm of the gradients of `model`'s trainable parameters, on the device
/// (`None` when nothing is trainable).
pub fn global_norm<M: Module>(model: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    TrainableIds::of(model).norm(grads)
}

/// Multiplies the gradients of `model`'s trainable parameters by `factor` (to undo a loss
/// scale, for one).
pub fn scale_gradients<M: Module>(model: &M, grads: &mut GradientsParams, factor: f64) {
    TrainableIds::of(model).map(grads, |g| g.mul_scalar(factor), |g| g.mul_scalar(factor));
}

/// Collects the ids of every trainable float parameter (LoRA factors included), by rank.
#[derive(Default)]
struct TrainableIds {
    vectors: Vec<ParamId>,
    matrices: Vec<ParamId>,
}

impl TrainableIds {
    /// The trainable parameters of `model`.
    fn of<M: Module>(model: &M) -> Self {
        let mut ids = Self::default();
        model.visit(&mut ids);
        ids
    }

    /// The global L2 norm of their gradients (`None` when none has one).
    fn norm(&self, grads: &GradientsParams) -> Option<Tensor<1>> {
        let mut squares: Vec<Tensor<1>> = Vec::new();
        for id in &self.vectors {
            if let Some(g) = grads.get::<1>(*id) {
                squares.push(g.square().sum());
            }
        }
        for id in &self.matrices {
            if let Some(g) = grads.get::<2>(*id) {
                squares.push(g.square().sum());
            }
        }
        if squares.is_empty() {
            return None;
        }
        Some(Tensor::cat(squares, 0).sum().sqrt())
    }

    /// Multiplies their gradients by `factor` (`[1]`, on the gradients' device).
    fn scale(&self, grads: &mut GradientsParams, factor: Tensor<1>) {
        let factor_2d = factor.clone().reshape([1, 1]);
        self.map(
            grads,
            |g| g.mul(factor.clone()),
            |g| g.mul(factor_2d.clone()),
        );
    }

    /// Replaces each of their gradients `g` by `vector(g)` or `matrix(g)`, by rank.
    fn map(
        &self,
        grads: &mut GradientsParams,
        vector: impl Fn(Tensor<1>) -> Tensor<1>,
        matrix: impl Fn(Tensor<2>) -> Tensor<2>,
    ) {
        for id in &self.vectors {
            if let Some(g) = grads.remove::<1>(*id) {
                grads.register(*id, vector(g));
            }
        }
        for id in &self.matrices {
            if let Some(g) = grads.remove::<2>(*id) {
                grads.register(*id, matrix(g));
            }
        }
    }
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
