//! AdamW over all of a model's trainable parameters at once, for GPUs.
//!
//! The per-tensor optimizer issues some eighteen operations for each parameter tensor
//! (gradient-norm clipping, the two moments, bias correction, decay, update), so a BERT
//! step spends about two thousand operations on its ~100 tensors; on a GPU each one costs
//! host time to record, fuse and launch, whatever its size. This optimizer gathers the
//! gradients into one flat buffer (one concatenation), clips and updates there with a
//! dozen whole-buffer operations, and hands the parameters back as slices of one flat
//! parameter buffer. The arithmetic is exactly that of [`super::AdamW`] plus
//! global-norm clipping; `the_flat_step_matches_the_per_tensor_step` checks it.
//!
//! The flat parameter buffer is kept between steps, so the model's parameters must change
//! only through this optimizer while it is in use (as in a training loop). A checkpoint
//! holds the step count and both moments ([`FlatAdamW::save`]); the parameters come from the
//! model's own checkpoint.

use super::{BETA_1, BETA_2, StepGradients, clip_scale};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Shape, Tensor, TensorData};
use regex::Regex;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

/// First bytes of a saved state, with the format's version.
const MAGIC: &[u8; 8] = b"JLFLAT01";
/// Each parameter starts at a multiple of this many values (256 bytes) in the flat
/// buffers, so a GPU backend can hand out its slice as a view instead of copying it; the
/// gaps hold zeros and stay zero.
const ALIGN: usize = 64;
/// The most tensors one concatenation takes. burn's fusion writes a concatenation as one
/// kernel when its inputs, its output and the kernel's metadata fit the device's storage
/// bindings (31 on Mesa's lavapipe, 30 with Metal, 1,024 on CUDA); a longer one runs as a
/// copy kernel per input, some hundred launches a step for the gradients alone.
const CAT_GROUP: usize = 24;

/// Multi-tensor AdamW with global gradient-norm clipping; see the module documentation.
pub struct FlatAdamW {
    epsilon: f32,
    weight_decay: f32,
    no_decay: Regex,
    max_grad_norm: Option<f64>,
    state: Option<State>,
    /// Moments read from a checkpoint, put on the device at the first step.
    loaded: Option<Saved>,
    /// The zeros of the alignment gaps, by length, made at the first step and reused: a
    /// fill made anew each step would share the fusion search's blocks with the
    /// concatenations and keep the one that takes it from being fused.
    gaps: HashMap<usize, Tensor<1>>,
}

/// Where one parameter lives in the flat buffers.
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    id: ParamId,
    offset: usize,
    shape: Shape,
    decay: bool,
}

impl Slot {
    fn len(&self) -> usize {
        self.shape.num_elements()
    }
}

struct State {
    slots: Vec<Slot>,
    by_id: HashMap<ParamId, usize>,
    /// The parameters' current values, all of them in one buffer.
    params: Tensor<1>,
    moment_1: Tensor<1>,
    moment_2: Tensor<1>,
    /// 1 where the parameter takes weight decay, 0 where not.
    decay_mask: Tensor<1>,
    time: usize,
}

/// Optimizer state as saved: steps taken and both moments.
struct Saved {
    time: usize,
    moment_1: Vec<f32>,
    moment_2: Vec<f32>,
}

impl FlatAdamW {
    /// AdamW with β = (0.9, 0.999), ε, decoupled weight decay λ on every parameter whose
    /// module path does not match `no_decay`, and, when `max_grad_norm` is set, gradients
    /// scaled to a global L2 norm of at most that.
    pub fn new(
        epsilon: f32,
        weight_decay: f32,
        no_decay: Regex,
        max_grad_norm: Option<f64>,
    ) -> Self {
        Self {
            epsilon,
            weight_decay,
            no_decay,
            max_grad_norm,
            state: None,
            loaded: None,
            gaps: HashMap::new(),
        }
    }

    /// One step at learning rate `lr` over every parameter `gradients` holds a gradient for,
    /// undoing their loss scale if they carry one. Returns the updated model and the global
    /// gradient norm before clipping, still on the device (`None` when no parameter has a
    /// gradient, or when neither clipping nor a loss scale called for it).
    pub fn step<M: Module>(
        &mut self,
        lr: f64,
        model: M,
        gradients: impl Into<StepGradients>,
    ) -> (M, Option<Tensor<1>>) {
        let StepGradients { mut grads, scaled } = gradients.into();
        let mut gather = Gather {
            grads: &mut grads,
            no_decay: &self.no_decay,
            take_values: self.state.is_none(),
            gaps: &mut self.gaps,
            path: Vec::new(),
            slots: Vec::new(),
            grads_flat: Vec::new(),
            values_flat: Vec::new(),
            offset: 0,
        };
        model.visit(&mut gather);
        gather.align();
        let Gather {
            slots,
            grads_flat,
            values_flat,
            offset: total,
            ..
        } = gather;
        if slots.is_empty() {
            return (model, None);
        }
        let grad = cat_in_groups(grads_flat);
        let device = grad.device();
        let mut state = match self.state.take() {
            Some(state) => {
                assert!(
                    state.slots == slots,
                    "the flat AdamW step met other parameters than at its first step"
                );
                state
            }
            None => self.first_state(slots, total, cat_in_groups(values_flat), &device),
        };

        let (grad, norm) = match (scaled, self.max_grad_norm) {
            (Some(scaled), max_norm) => {
                let (norm, multiplier) = scaled.unscale(max_norm);
                (grad.mul(multiplier), Some(norm))
            }
            (None, Some(max_norm)) => {
                let norm = grad.clone().square().sum().sqrt();
                (grad.mul(clip_scale(norm.clone(), max_norm)), Some(norm))
            }
            (None, None) => (grad, None),
        };
        state.time += 1;
        let time = state.time as i32;
        state.moment_1 = state
            .moment_1
            .mul_scalar(BETA_1)
            .add(grad.clone().mul_scalar(1.0 - BETA_1));
        state.moment_2 = state
            .moment_2
            .mul_scalar(BETA_2)
            .add(grad.square().mul_scalar(1.0 - BETA_2));
        let step = state
            .moment_1
            .clone()
            .div_scalar(1.0 - BETA_1.powi(time))
            .div(
                state
                    .moment_2
                    .clone()
                    .div_scalar(1.0 - BETA_2.powi(time))
                    .sqrt()
                    .add_scalar(self.epsilon),
            );
        let decay = state
            .decay_mask
            .clone()
            .mul_scalar(-(lr * self.weight_decay as f64) as f32)
            .add_scalar(1.0);
        state.params = state.params.mul(decay).sub(step.mul_scalar(lr as f32));

        let model = model.map(&mut Scatter { state: &state });
        self.state = Some(state);
        (model, norm)
    }

    /// The state of a first step: zero moments, or those of a loaded checkpoint.
    fn first_state(
        &mut self,
        slots: Vec<Slot>,
        total: usize,
        params: Tensor<1>,
        device: &Device,
    ) -> State {
        let mut mask = vec![0.0f32; total];
        for slot in slots.iter().filter(|slot| slot.decay) {
            mask[slot.offset..slot.offset + slot.len()].fill(1.0);
        }
        let flat = |values: Vec<f32>| Tensor::from_data(TensorData::new(values, [total]), device);
        let (time, moment_1, moment_2) = match self.loaded.take() {
            Some(saved) => {
                assert!(
                    saved.moment_1.len() == total,
                    "the checkpoint's optimizer state has {} values for {total} parameters",
                    saved.moment_1.len()
                );
                (saved.time, flat(saved.moment_1), flat(saved.moment_2))
            }
            None => (
                0,
                Tensor::zeros([total], device),
                Tensor::zeros([total], device),
            ),
        };
        State {
            by_id: slots.iter().enumerate().map(|(i, s)| (s.id, i)).collect(),
            slots,
            params,
            moment_1,
            moment_2,
            decay_mask: flat(mask),
            time,
        }
    }

    /// Writes the step count and both moments to `path`.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        let (time, moment_1, moment_2) = match (&self.state, &self.loaded) {
            (Some(state), _) => (
                state.time,
                values(state.moment_1.clone()),
                values(state.moment_2.clone()),
            ),
            (None, Some(saved)) => (saved.time, saved.moment_1.clone(), saved.moment_2.clone()),
            (None, None) => (0, Vec::new(), Vec::new()),
        };
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(fail)?);
        out.write_all(MAGIC).map_err(fail)?;
        out.write_all(&(time as u64).to_le_bytes()).map_err(fail)?;
        out.write_all(&(moment_1.len() as u64).to_le_bytes())
            .map_err(fail)?;
        for value in moment_1.iter().chain(&moment_2) {
            out.write_all(&value.to_le_bytes()).map_err(fail)?;
        }
        out.flush().map_err(fail)
    }

    /// Reads a state [`save`](Self::save) wrote for `model`; it takes effect at the next
    /// step. Fails with a clear message when the file is not such a state or was written
    /// for a model with other parameters.
    pub fn load<M: Module>(mut self, path: &Path, model: &M) -> Result<Self, String> {
        let fail = |e: String| format!("{}: {e}", path.display());
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map_err(|e| fail(e.to_string()))?;
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        let (Some(time), Some(len)) = (word(8), word(16)) else {
            return Err(fail("not a flat AdamW state (too short)".into()));
        };
        if &bytes[..8] != MAGIC || bytes.len() as u64 != 24 + 8 * len {
            return Err(fail("not a flat AdamW state, or cut short".into()));
        }
        let floats: Vec<f32> = bytes[24..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let mut trainable = TrainableLength(0);
        model.visit(&mut trainable);
        let expected = trainable.0.next_multiple_of(ALIGN);
        if len as usize != expected {
            return Err(fail(format!(
                "the optimizer state holds {len} values, but this model's trainable parameters take {expected}"
            )));
        }
        let (moment_1, moment_2) = floats.split_at(len as usize);
        self.state = None;
        self.loaded = Some(Saved {
            time: time as usize,
            moment_1: moment_1.to_vec(),
            moment_2: moment_2.to_vec(),
        });
        Ok(self)
    }
}

/// `parts` end to end, concatenated at most [`CAT_GROUP`] at a time (groups first, then
/// the groups), so that each concatenation is one fused kernel: about five for a MiniLM's
/// 105 gradients where one concatenation of them all ran as 105 copy kernels.
fn cat_in_groups(mut parts: Vec<Tensor<1>>) -> Tensor<1> {
    while parts.len() > CAT_GROUP {
        let mut rest = parts.into_iter().peekable();
        let mut groups = Vec::new();
        while rest.peek().is_some() {
            groups.push(Tensor::cat(rest.by_ref().take(CAT_GROUP).collect(), 0));
        }
        parts = groups;
    }
    Tensor::cat(parts, 0)
}

fn values(tensor: Tensor<1>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 values")
}

/// Collects, in module order, each parameter that has a gradient: its place in the flat
/// buffers, its gradient flattened and (at the first step) its value flattened, with zeros
/// in the gaps that [`ALIGN`] leaves.
struct Gather<'a> {
    grads: &'a mut GradientsParams,
    no_decay: &'a Regex,
    take_values: bool,
    gaps: &'a mut HashMap<usize, Tensor<1>>,
    path: Vec<String>,
    slots: Vec<Slot>,
    grads_flat: Vec<Tensor<1>>,
    values_flat: Vec<Tensor<1>>,
    offset: usize,
}

impl Gather<'_> {
    /// Pads the buffers with zeros up to the next multiple of [`ALIGN`].
    fn align(&mut self) {
        let gap = self.offset.next_multiple_of(ALIGN) - self.offset;
        let Some(device) = self.grads_flat.last().map(Tensor::device) else {
            return;
        };
        if gap > 0 {
            let zeros = self
                .gaps
                .entry(gap)
                .or_insert_with(|| Tensor::zeros([gap], &device));
            self.grads_flat.push(zeros.clone());
            if self.take_values {
                self.values_flat.push(zeros.clone());
            }
            self.offset += gap;
        }
    }
}

impl ModuleVisitor for Gather<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return;
        };
        self.align();
        let shape = grad.shape();
        let len = shape.num_elements();
        self.grads_flat.push(grad.reshape([len]));
        if self.take_values {
            self.values_flat.push(param.val().inner().reshape([len]));
        }
        self.slots.push(Slot {
            id: param.id,
            offset: self.offset,
            shape,
            decay: !self.no_decay.is_match(&self.path.join(".")),
        });
        self.offset += len;
    }
}

/// The length of the flat buffers for a model's trainable parameters, laid out as
/// [`Gather`] lays them out (before the final alignment).
struct TrainableLength(usize);

impl ModuleVisitor for TrainableLength {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.val().is_require_grad() {
            self.0 = self.0.next_multiple_of(ALIGN) + param.lazy_shape().num_elements();
        }
    }
}

/// Replaces each gathered parameter with its slice of the flat parameter buffer, keeping
/// its autodiff settings.
struct Scatter<'a> {
    state: &'a State,
}

impl ModuleMapper for Scatter<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(&index) = self.state.by_id.get(&param.id) else {
            return param;
        };
        let slot = &self.state.slots[index];
        let (id, old, mapper) = param.consume();
        let inner: Tensor<D> = self
            .state
            .params
            .clone()
            .narrow(0, slot.offset, slot.len())
            .reshape(slot.shape.clone());
        let mut value = Tensor::from_inner(inner);
        if let Some(strategy) = old.gradient_checkpointing_strategy() {
            value = value.with_gradient_checkpointing_strategy(strategy);
        }
        if old.is_require_grad() {
            value = value.require_grad();
        }
        Param::from_mapped_value(id, value, mapper)
    }
}

#[cfg(test)]
mod tests;
