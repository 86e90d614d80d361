//! Global gradient-norm clipping, kept on the device: the norm and the scale stay tensors,
//! so clipping never waits for a read-back. Gradients that still carry the loss scale of an
//! f16 run ([`StepGradients::scaled`]) are unscaled by the same multiplication, with the
//! norm computed for the overflow check, so neither the norm nor a pass over every
//! gradient is spent twice.

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

/// A step's gradients, as the optimizers take them.
pub struct StepGradients {
    /// The gradients of the loss, still multiplied by the loss scale when `scaled` is set.
    pub grads: GradientsParams,
    /// The loss scale the gradients still carry, with their global norm as they are.
    pub scaled: Option<ScaledNorm>,
}

/// The loss scale a step's gradients still carry, and their global L2 norm with it.
pub struct ScaledNorm {
    /// What the loss was multiplied by before the backward pass.
    pub factor: f64,
    /// The global L2 norm of the scaled gradients, on the device.
    pub norm: Tensor<1>,
}

impl From<GradientsParams> for StepGradients {
    /// Gradients of an unscaled loss.
    fn from(grads: GradientsParams) -> Self {
        Self {
            grads,
            scaled: None,
        }
    }
}

impl ScaledNorm {
    /// The gradients' true norm, and what to multiply them by to undo the loss scale and
    /// then, when `max_norm` is set, clip them to it: `clip_scale(norm) / factor`.
    pub fn unscale(self, max_norm: Option<f64>) -> (Tensor<1>, Tensor<1>) {
        let norm = self.norm.div_scalar(self.factor);
        let multiplier = match max_norm {
            Some(max_norm) => clip_scale(norm.clone(), max_norm),
            None => norm.ones_like(),
        };
        (norm, multiplier.div_scalar(self.factor))
    }
}

/// Scales the gradients of `model`'s trainable parameters so that their global L2 norm is
/// at most `max_norm`, without leaving the device: the scale is [`clip_scale`] of the norm,
/// divided by the loss scale when the gradients still carry one. Returns the gradients and
/// their true norm before clipping, still on the device (`None` when nothing is
/// trainable).
pub fn clip_global_norm<M: Module>(
    model: &M,
    gradients: StepGradients,
    max_norm: f64,
) -> (GradientsParams, Option<Tensor<1>>) {
    let ids = TrainableIds::of(model);
    let StepGradients { mut grads, scaled } = gradients;
    let (norm, multiplier) = match scaled {
        Some(scaled) => scaled.unscale(Some(max_norm)),
        None => match ids.norm(&grads) {
            Some(norm) => (norm.clone(), clip_scale(norm, max_norm)),
            None => return (grads, None),
        },
    };
    ids.scale(&mut grads, multiplier);
    (grads, Some(norm))
}

/// The global L2 norm of the gradients of `model`'s trainable parameters, on the device
/// (`None` when nothing is trainable).
pub fn global_norm<M: Module>(model: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    TrainableIds::of(model).norm(grads)
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
