//! The flat AdamW step against the per-tensor one, with and without a loss scale, and
//! its saved state.

use super::*;
use crate::optim::AdamW;
use crate::optim::tests::max_difference;
use burn::module::Module;
use burn::module::ParamGroup;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::optim::ModuleOptimizer;

#[derive(Module, Debug)]
struct Tiny {
    dense: Linear,
    norm: LayerNorm,
    out: Linear,
}

impl Tiny {
    fn new(device: &Device) -> Self {
        Self {
            dense: LinearConfig::new(12, 16).init(device),
            norm: LayerNormConfig::new(16).init(device),
            out: LinearConfig::new(16, 3).init(device),
        }
    }

    fn loss(&self, input: Tensor<2>) -> Tensor<1> {
        let hidden = self.norm.forward(self.dense.forward(input).tanh());
        self.out.forward(hidden).powi_scalar(2).mean()
    }

    fn weights(&self) -> Vec<f32> {
        let mut all = values(self.dense.weight.val().inner().reshape([-1]));
        all.extend(values(self.norm.gamma.val().inner()));
        all.extend(values(self.out.bias.as_ref().unwrap().val().inner()));
        all
    }
}

const NO_DECAY: &str = r"(\.bias$|norm\.(gamma|beta)$)";

fn input(device: &Device) -> Tensor<2> {
    Tensor::random(
        [6, 12],
        burn::tensor::Distribution::Normal(0.0, 3.0),
        device,
    )
}

/// The per-tensor path of a training run: clip to a global norm, then burn's optimizer
/// with a no-decay group.
fn per_tensor_steps(model: Tiny, input: Tensor<2>, steps: usize, max_norm: f32) -> Tiny {
    let mut optimizer = ModuleOptimizer::from(AdamW::new(1e-8, 0.1)).with_group(
        ParamGroup::from_regex(NO_DECAY).unwrap(),
        AdamW::new(1e-8, 0.0),
        None,
    );
    let mut model = model;
    for step in 0..steps {
        let mut grads = GradientsParams::from_grads(model.loss(input.clone()).backward(), &model);
        let mut squares = Vec::new();
        let mut ids = Vec::new();
        model.visit(&mut Ids(&mut ids));
        for (id, rank) in &ids {
            match rank {
                1 => squares.push(grads.get::<1>(*id).unwrap().square().sum()),
                _ => squares.push(grads.get::<2>(*id).unwrap().square().sum()),
            }
        }
        let norm = Tensor::cat(squares, 0).sum().sqrt();
        let scale = norm
            .add_scalar(1e-6)
            .recip()
            .mul_scalar(max_norm)
            .clamp_max(1.0);
        for (id, rank) in &ids {
            if *rank == 1 {
                let g = grads.remove::<1>(*id).unwrap();
                grads.register(*id, g.mul(scale.clone()));
            } else {
                let g = grads.remove::<2>(*id).unwrap();
                grads.register(*id, g.mul(scale.clone().reshape([1, 1])));
            }
        }
        model = optimizer.step(1e-2 / (step + 1) as f64, model, grads);
    }
    model
}

struct Ids<'a>(&'a mut Vec<(ParamId, usize)>);

impl ModuleVisitor for Ids<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push((param.id, D));
    }
}

fn flat_steps(
    optimizer: &mut FlatAdamW,
    model: Tiny,
    input: Tensor<2>,
    steps: std::ops::Range<usize>,
) -> (Tiny, Vec<f32>) {
    let mut model = model;
    let mut norms = Vec::new();
    for step in steps {
        let grads = GradientsParams::from_grads(model.loss(input.clone()).backward(), &model);
        let (updated, norm) = optimizer.step(1e-2 / (step + 1) as f64, model, grads);
        model = updated;
        norms.extend(values(norm.unwrap()));
    }
    (model, norms)
}

#[test]
fn the_flat_step_matches_the_per_tensor_step() {
    let device = Device::flex().autodiff();
    device.seed(5);
    let model = Tiny::new(&device);
    let input = input(&device);
    let no_decay = Regex::new(NO_DECAY).unwrap();
    for max_norm in [0.05f32, 100.0] {
        let expected = per_tensor_steps(model.clone(), input.clone(), 6, max_norm);
        let mut flat = FlatAdamW::new(1e-8, 0.1, no_decay.clone(), Some(max_norm as f64));
        let (actual, norms) = flat_steps(&mut flat, model.clone(), input.clone(), 0..6);
        let worst = max_difference(&expected.weights(), &actual.weights());
        assert!(worst < 1e-6, "max norm {max_norm}: max difference {worst}");
        let moved = max_difference(&model.weights(), &expected.weights());
        assert!(moved > 1e-3, "max norm {max_norm}: moved only {moved}");
        assert!(norms.iter().all(|n| n.is_finite() && *n > 0.0), "{norms:?}");
    }
}

/// Six steps of `model`, by [`FlatAdamW`] (`flat`) or by [`clip_global_norm`] and the
/// per-tensor AdamW, with the loss multiplied by `loss_scale` (when set) and the scale
/// left for the optimizer to undo. Returns the weights and the norms the steps report.
fn steps_with_loss_scale(
    model: Tiny,
    input: Tensor<2>,
    loss_scale: Option<f64>,
    flat: bool,
    max_norm: f64,
) -> (Vec<f32>, Vec<f32>) {
    use crate::optim::{ScaledNorm, clip_global_norm, global_norm};
    let no_decay = Regex::new(NO_DECAY).unwrap();
    let mut flat_optimizer = FlatAdamW::new(1e-8, 0.1, no_decay, Some(max_norm));
    let mut per_tensor = ModuleOptimizer::from(AdamW::new(1e-8, 0.1));
    let mut model = model;
    let mut norms = Vec::new();
    for step in 0..6 {
        let lr = 1e-2 / (step + 1) as f64;
        let loss = model.loss(input.clone());
        let gradients = match loss_scale {
            None => GradientsParams::from_grads(loss.backward(), &model).into(),
            Some(factor) => {
                let grads = GradientsParams::from_grads(loss.mul_scalar(factor).backward(), &model);
                let norm = global_norm(&model, &grads).unwrap();
                StepGradients {
                    grads,
                    scaled: Some(ScaledNorm { factor, norm }),
                }
            }
        };
        let norm;
        (model, norm) = if flat {
            flat_optimizer.step(lr, model, gradients)
        } else {
            let (grads, norm) = clip_global_norm(&model, gradients, max_norm);
            (per_tensor.step(lr, model, grads), norm)
        };
        norms.extend(values(norm.unwrap()));
    }
    (model.weights(), norms)
}

#[test]
fn a_loss_scale_is_undone_where_the_gradients_are_clipped() {
    let device = Device::flex().autodiff();
    device.seed(6);
    let model = Tiny::new(&device);
    let input = input(&device);
    for flat in [false, true] {
        for max_norm in [0.05, 100.0] {
            let run =
                |scale| steps_with_loss_scale(model.clone(), input.clone(), scale, flat, max_norm);
            let (expected, expected_norms) = run(None);
            let (actual, actual_norms) = run(Some(65_536.0));
            let worst = max_difference(&expected, &actual);
            assert!(worst < 1e-6, "flat {flat}, max norm {max_norm}: {worst}");
            let moved = max_difference(&model.weights(), &expected);
            assert!(
                moved > 1e-3,
                "flat {flat}, max norm {max_norm}: moved only {moved}"
            );
            for (e, a) in expected_norms.iter().zip(&actual_norms) {
                assert!((e - a).abs() <= 1e-5 * e.abs(), "norms {e} and {a}");
            }
        }
    }

    // Without clipping, the multiplier only undoes the scale.
    let scaled = crate::optim::ScaledNorm {
        factor: 4.0,
        norm: Tensor::from_floats([8.0], &device),
    };
    let (norm, multiplier) = scaled.unscale(None);
    assert_eq!((values(norm), values(multiplier)), (vec![2.0], vec![0.25]));
}

#[test]
fn a_saved_state_resumes_the_same_steps() {
    let device = Device::flex().autodiff();
    device.seed(8);
    let model = Tiny::new(&device);
    let input = input(&device);
    let fresh = || FlatAdamW::new(1e-8, 0.1, Regex::new(NO_DECAY).unwrap(), Some(1.0));
    let mut straight = fresh();
    let (expected, _) = flat_steps(&mut straight, model.clone(), input.clone(), 0..5);

    let mut first = fresh();
    let (halfway, _) = flat_steps(&mut first, model, input.clone(), 0..3);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("optimizer.flat");
    first.save(&file).unwrap();
    let mut resumed = fresh().load(&file, &halfway).unwrap();
    let (actual, _) = flat_steps(&mut resumed, halfway.clone(), input, 3..5);
    assert_eq!(expected.weights(), actual.weights());

    let other_model = Tiny {
        out: LinearConfig::new(16, 5).init(&device),
        ..Tiny::new(&device)
    };
    let error = fresh().load(&file, &other_model).err().unwrap();
    assert!(
        error.contains("this model's trainable parameters"),
        "{error}"
    );

    std::fs::write(&file, b"JLFLAT01 short").unwrap();
    let error = fresh().load(&file, &halfway).err().unwrap();
    assert!(error.contains("not a flat AdamW state"), "{error}");
}

#[test]
fn concatenating_in_groups_gives_the_plain_concatenation() {
    let device = Device::flex();
    // One group, one level of groups (60 → 3) and two (600 → 25 → 2), with lengths that
    // differ from part to part.
    for count in [5, CAT_GROUP, 60, 600] {
        let parts: Vec<Tensor<1>> = (0..count)
            .map(|i| {
                let len = 1 + i % 7;
                let values: Vec<f32> = (0..len).map(|j| (i * 10 + j) as f32).collect();
                Tensor::from_data(TensorData::new(values, [len]), &device)
            })
            .collect();
        let expected = values(Tensor::cat(parts.clone(), 0));
        assert_eq!(values(cat_in_groups(parts)), expected, "{count} parts");
    }
}
