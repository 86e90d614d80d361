//! The fused CPU operations against burn's own operations on the same CPU backend: outputs,
//! and the gradients autodiff gives through each.

use super::*;
use burn::module::{Module, Param};
use burn::nn::LayerNormConfig;
use burn::tensor::{Device, Distribution, Tolerance};

fn device() -> Device {
    Device::flex().autodiff()
}

/// Panics unless `got` and `want` agree to within `tolerance` everywhere.
fn assert_close<const D: usize>(got: &Tensor<D>, want: &Tensor<D>, tolerance: f32) {
    got.clone()
        .into_data()
        .assert_approx_eq::<f32>(&want.clone().into_data(), Tolerance::absolute(tolerance));
}

/// `Σ out·weights` for fixed random weights: a loss whose gradient to `out` is `weights`.
fn weighted_sum<const D: usize>(out: Tensor<D>, weights: &Tensor<D>) -> Tensor<1> {
    (out * weights.clone()).sum()
}

#[test]
fn the_kernels_exp_is_within_two_ulp_and_zero_far_below() {
    for step in -8700..=8800 {
        let x = step as f32 / 100.0;
        let want = (x as f64).exp();
        let got = kernels::exp(x) as f64;
        assert!(
            ((got - want) / want).abs() < 2.5e-7,
            "exp({x}) = {got}, want {want}"
        );
    }
    assert_eq!(kernels::exp(-88.0), 0.0);
    assert_eq!(kernels::exp(-1.0e4), 0.0);
    assert_eq!(kernels::exp(f32::NEG_INFINITY), 0.0);
}

#[test]
fn gelu_matches_burns_values_and_gradient() {
    let device = device();
    let x =
        Tensor::<3>::random([3, 7, 45], Distribution::Uniform(-7.0, 7.0), &device).require_grad();
    let weights = Tensor::<3>::random([3, 7, 45], Distribution::Default, &device);
    let want = activation::gelu(x.clone());
    let got = gelu(x.clone());
    assert_close(&got, &want, 2e-6);
    let grad = |out: Tensor<3>| x.grad(&weighted_sum(out, &weights).backward()).unwrap();
    assert_close(&grad(got), &grad(want), 2e-6);
}

#[test]
fn gelu_of_a_transposed_tensor_is_gelu_of_its_elements() {
    let device = Device::flex();
    let x = Tensor::<2>::random([9, 13], Distribution::Uniform(-4.0, 4.0), &device);
    let want = activation::gelu(x.clone()).transpose();
    assert_close(&gelu(x.transpose()), &want, 2e-6);
}

#[test]
fn attention_softmax_matches_burns_values_and_gradient() {
    let device = device();
    let shape = [2, 3, 5, 19];
    let scores = Tensor::<4>::random(shape, Distribution::Normal(0.0, 4.0), &device).require_grad();
    // The second sentence has four padding keys, masked with the model's bias.
    let padding = Tensor::<2>::from_floats(
        [
            [0.0; 19],
            std::array::from_fn(|key| if key >= 15 { 1.0 } else { 0.0 }),
        ],
        &device,
    );
    let bias = padding.mul_scalar(-1.0e9).reshape([2, 1, 1, 19]);
    let weights = Tensor::<4>::random(shape, Distribution::Default, &device);
    let divisor = 8f64.sqrt();
    let want = activation::softmax(scores.clone().div_scalar(divisor) + bias.clone(), 3);
    let got = attention_softmax(scores.clone(), divisor, &bias);
    assert_close(&got, &want, 1e-6);
    let grad = |out: Tensor<4>| {
        scores
            .grad(&weighted_sum(out, &weights).backward())
            .unwrap()
    };
    assert_close(&grad(got), &grad(want), 1e-6);
}

#[test]
fn layer_norm_matches_burns_values_and_gradients() {
    let device = device();
    let mut norm = LayerNormConfig::new(37).with_epsilon(1e-12).init(&device);
    let random = || {
        Param::from_tensor(Tensor::random(
            [37],
            Distribution::Normal(1.0, 0.5),
            &device,
        ))
    };
    norm.gamma = random();
    norm.beta = Some(random());
    let x =
        Tensor::<3>::random([4, 11, 37], Distribution::Normal(1.0, 3.0), &device).require_grad();
    let weights = Tensor::<3>::random([4, 11, 37], Distribution::Default, &device);
    let want = norm.forward(x.clone());
    let got = layer_norm(&norm, 1e-12, x.clone());
    assert_close(&got, &want, 2e-6);
    let grads = |out: Tensor<3>| {
        let grads = weighted_sum(out, &weights).backward();
        let beta = norm
            .beta
            .as_ref()
            .unwrap()
            .grad(&grads)
            .unwrap()
            .into_data();
        (
            x.grad(&grads).unwrap().into_data(),
            norm.gamma.grad(&grads).unwrap().into_data(),
            beta,
        )
    };
    let (want_x, want_gamma, want_beta) = grads(want);
    let (got_x, got_gamma, got_beta) = grads(got);
    got_x.assert_approx_eq::<f32>(&want_x, Tolerance::absolute(1e-5));
    got_gamma.assert_approx_eq::<f32>(&want_gamma, Tolerance::absolute(1e-4));
    got_beta.assert_approx_eq::<f32>(&want_beta, Tolerance::absolute(1e-4));
}

#[test]
fn layer_norm_after_a_residual_matches_burns_values_and_gradients() {
    let device = device();
    let mut norm = LayerNormConfig::new(37).with_epsilon(1e-12).init(&device);
    norm.gamma = Param::from_tensor(Tensor::random([37], Distribution::Default, &device));
    // 1,600 rows: more than one rayon task's, so each task must find its own residual rows.
    let shape = [8, 200, 37];
    let random = || Tensor::<3>::random(shape, Distribution::Normal(1.0, 3.0), &device);
    let (x, residual) = (random().require_grad(), random().require_grad());
    let weights = Tensor::<3>::random(shape, Distribution::Default, &device);
    let want = norm.forward(x.clone() + residual.clone());
    let got = residual_layer_norm(&norm, 1e-12, x.clone(), residual.clone());
    // The sum is burn's, rounding included, so the outputs agree as plain LayerNorm's do.
    assert_close(&got, &want, 2e-6);
    let grads = |out: Tensor<3>| {
        let grads = weighted_sum(out, &weights).backward();
        let beta = norm.beta.as_ref().unwrap().grad(&grads).unwrap();
        [
            x.grad(&grads).unwrap(),
            residual.grad(&grads).unwrap(),
            norm.gamma.grad(&grads).unwrap().reshape([1, 1, 37]),
            beta.reshape([1, 1, 37]),
        ]
    };
    let tolerances = [1e-5, 1e-5, 2e-3, 2e-3];
    for ((got, want), tolerance) in grads(got).iter().zip(&grads(want)).zip(tolerances) {
        assert_close(got, want, tolerance);
    }
}

#[test]
fn dropout_masks_are_per_chunk_streams_of_two_decisions_a_draw() {
    // The definition, element by element: chunk c of 2¹⁴ elements draws from SplitMix64
    // seeded with seed ^ c·K; each draw decides two elements, the low half the first.
    let (seed, keep, len) = (99, 0.7, 3 * (1 << 14) + 77);
    let threshold = (keep * 4_294_967_296.0f64).round() as u64;
    let mut want = Vec::with_capacity(len);
    for chunk in 0..len.div_ceil(1 << 14) {
        let mut rng =
            crate::rng::SeededRng::new(seed ^ (chunk as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let elements = (len - chunk * (1 << 14)).min(1 << 14);
        for pair in 0..elements.div_ceil(2) {
            let draw = rng.next_u64();
            want.push(draw & 0xFFFF_FFFF < threshold);
            if 2 * pair + 1 < elements {
                want.push(draw >> 32 < threshold);
            }
        }
    }
    let factors = DropoutMask::new(seed, keep).factors(len);
    let scale = (1.0 / keep) as f32;
    let want: Vec<f32> = want
        .iter()
        .map(|&kept| if kept { scale } else { 0.0 })
        .collect();
    assert_eq!(factors, want);
    let kept = want.iter().filter(|&&f| f != 0.0).count() as f64 / len as f64;
    assert!((kept - keep).abs() < 0.01, "kept {kept}");
}

#[test]
fn fused_dropout_matches_a_product_with_the_masks_factors() {
    let device = device();
    let shape = [3, 5, 4_001];
    let x = Tensor::<3>::random(shape, Distribution::Normal(0.0, 2.0), &device).require_grad();
    let weights = Tensor::<3>::random(shape, Distribution::Default, &device);
    let mask = DropoutMask::new(5, 0.9);
    let factors = Tensor::<3>::from_data(
        TensorData::new(mask.factors(shape.iter().product()), shape),
        &device,
    );
    let grad = |out: Tensor<3>| x.grad(&weighted_sum(out, &weights).backward()).unwrap();
    // Once on a fresh intermediate (dropped over its own buffer), once on a shared one.
    for input in [x.clone().mul_scalar(1.0), x.clone()] {
        let want = x.clone() * factors.clone();
        let got = dropout(input, mask);
        got.clone()
            .into_data()
            .assert_eq(&want.clone().into_data(), true);
        grad(got)
            .into_data()
            .assert_eq(&grad(want).into_data(), true);
    }
}

#[test]
fn the_fused_operations_run_without_autodiff_too() {
    let device = Device::flex();
    let x = Tensor::<2>::random([6, 24], Distribution::Default, &device);
    let norm = LayerNormConfig::new(24).init(&device);
    assert_close(&layer_norm(&norm, 1e-5, x.clone()), &norm.forward(x), 2e-6);
}

#[test]
fn the_fused_operations_leave_shared_inputs_alone() {
    let device = Device::flex();
    let scores = Tensor::<4>::random([2, 2, 3, 8], Distribution::Default, &device);
    let bias = Tensor::<4>::zeros([2, 1, 1, 8], &device);
    let before = scores.clone().into_data();
    let probabilities = attention_softmax(scores.clone(), 2.0, &bias);
    let dropped = dropout(scores.clone(), DropoutMask::new(3, 0.5));
    scores.into_data().assert_eq(&before, true);
    assert!(dropped.into_data().iter::<f32>().any(|v| v == 0.0));
    let ones = Tensor::<4>::ones([2, 2, 3, 1], &device);
    assert_close(&probabilities.sum_dim(3), &ones, 1e-6);
}

#[test]
fn linear_layers_match_burns_values_and_gradients_with_and_without_gelu() {
    let device = device();
    let layer = burn::nn::LinearConfig::new(24, 40).init(&device);
    let rows =
        Tensor::<2>::random([70, 24], Distribution::Normal(0.0, 2.0), &device).require_grad();
    let weights = Tensor::<2>::random([70, 40], Distribution::Default, &device);
    for then_gelu in [false, true] {
        let plain = layer.forward(rows.clone());
        let want = if then_gelu {
            activation::gelu(plain)
        } else {
            plain
        };
        let got = linear(&layer, rows.clone(), then_gelu);
        assert_close(&got, &want, 1e-5);
        let grads = |out: Tensor<2>| {
            let grads = weighted_sum(out, &weights).backward();
            let bias = layer
                .bias
                .as_ref()
                .unwrap()
                .grad(&grads)
                .unwrap()
                .into_data();
            let weight = layer.weight.grad(&grads).unwrap().into_data();
            (rows.grad(&grads).unwrap().into_data(), weight, bias)
        };
        let (want_x, want_weight, want_bias) = grads(want);
        let (got_x, got_weight, got_bias) = grads(got);
        got_x.assert_approx_eq::<f32>(&want_x, Tolerance::absolute(1e-5));
        got_weight.assert_approx_eq::<f32>(&want_weight, Tolerance::absolute(1e-4));
        got_bias.assert_approx_eq::<f32>(&want_bias, Tolerance::absolute(1e-4));
    }
}

#[test]
fn batched_products_match_burns_values_and_gradients() {
    let device = device();
    // As the attention's scores: the keys transposed in place.
    let query = Tensor::<4>::random([2, 3, 7, 5], Distribution::Default, &device).require_grad();
    let key = Tensor::<4>::random([2, 3, 6, 5], Distribution::Default, &device).require_grad();
    let weights = Tensor::<4>::random([2, 3, 7, 6], Distribution::Default, &device);
    let want = query.clone().matmul(key.clone().swap_dims(2, 3));
    let got = matmul(query.clone(), key.clone().swap_dims(2, 3));
    assert_close(&got, &want, 1e-5);
    let grads = |out: Tensor<4>| {
        let grads = weighted_sum(out, &weights).backward();
        (query.grad(&grads).unwrap(), key.grad(&grads).unwrap())
    };
    let ((got_query, got_key), (want_query, want_key)) = (grads(got), grads(want));
    assert_close(&got_query, &want_query, 1e-5);
    assert_close(&got_key, &want_key, 1e-5);

    // One side frozen (LoRA's): the other still gets its gradient.
    let frozen = Tensor::<2>::random([5, 4], Distribution::Default, &device);
    let rows = Tensor::<2>::random([9, 5], Distribution::Default, &device).require_grad();
    let grad = |out: Tensor<2>| rows.grad(&out.sum().backward()).unwrap();
    let want = grad(rows.clone().matmul(frozen.clone()));
    assert_close(&grad(matmul(rows.clone(), frozen)), &want, 1e-5);

    // Batches that broadcast are burn's to multiply.
    let one = Tensor::<3>::random([1, 5, 6], Distribution::Default, &device);
    let two = Tensor::<3>::random([2, 7, 5], Distribution::Default, &device);
    assert_close(&matmul(two.clone(), one.clone()), &two.matmul(one), 1e-5);
}

#[test]
fn empty_tensors_pass_through_every_kernel() {
    let mut empty: Vec<f32> = Vec::new();
    kernels::gelu(&mut empty);
    assert!(kernels::gelu_with_slope(&mut empty).is_empty());
    kernels::multiply(&mut empty, &[]);
    kernels::softmax(&mut empty, &[], 0, 1.0);
    kernels::softmax_backward(&[], &mut empty, 0, 1.0);
    let (out, saved) = kernels::layer_norm(&[], Some(&[]), &[1.0; 4], &[0.0; 4], 1e-5);
    let mask = DropoutMask::new(1, 0.5);
    assert!(mask.bits(0).is_empty() && mask.factors(0).is_empty());
    mask.apply(&[], &mut empty);
    assert!(out.is_empty());
    let (dgamma, dbeta) = kernels::layer_norm_backward(&mut empty, &saved, &[1.0; 4]);
    assert_eq!((dgamma, dbeta), (vec![0.0; 4], vec![0.0; 4]));
    assert_eq!(kernels::sum_rows(&[], 3, None), vec![0.0; 3]);
}

#[test]
fn rows_summed_as_read_rounded_equal_the_sums_of_a_rounded_copy() {
    // Under 32,768 elements: one rayon task, whose sums are added in one order.
    let width = 48;
    let rows: Vec<f32> = (0..width * 600)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) % 100_003) as f32 * 1.37e-3 - 60.0)
        .collect();
    for format in [NarrowFormat::Bf16, NarrowFormat::F16] {
        let mut copy = rows.clone();
        kernels::round_to(&mut copy, format);
        let (got, want) = (
            kernels::sum_rows(&rows, width, Some(format)),
            kernels::sum_rows(&copy, width, None),
        );
        let bits = |sums: &[f32]| sums.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{format:?}");
        assert_ne!(got, kernels::sum_rows(&rows, width, None), "{format:?}");
    }
}

#[test]
fn frozen_weights_and_many_tasks_still_get_the_right_gradients() {
    // Over 32,768 elements per tensor, so the rows are split over several rayon tasks and
    // their partial sums reduced; the layers' own parameters frozen, as LoRA freezes them.
    let device = device();
    let layer = burn::nn::LinearConfig::new(64, 96).init(&device).no_grad();
    let norm = LayerNormConfig::new(96).init(&device).no_grad();
    let rows = Tensor::<2>::random([700, 64], Distribution::Default, &device).require_grad();
    let weights = Tensor::<2>::random([700, 96], Distribution::Default, &device);
    let want = norm.forward(activation::gelu(layer.forward(rows.clone())));
    let got = layer_norm(&norm, 1e-5, linear(&layer, rows.clone(), true));
    assert_close(&got, &want, 1e-5);
    let grad = |out: Tensor<2>| rows.grad(&weighted_sum(out, &weights).backward()).unwrap();
    assert_close(&grad(got), &grad(want), 1e-5);
    let many = Tensor::<2>::random([300, 200], Distribution::Default, &device).require_grad();
    let trained = LayerNormConfig::new(200).init(&device);
    let sums = |out: Tensor<2>| {
        let grads = out.sum().backward();
        let beta = trained
            .beta
            .as_ref()
            .unwrap()
            .grad(&grads)
            .unwrap()
            .into_data();
        (trained.gamma.grad(&grads).unwrap().into_data(), beta)
    };
    let (want_gamma, want_beta) = sums(trained.forward(many.clone()));
    let (got_gamma, got_beta) = sums(layer_norm(&trained, 1e-5, many));
    got_gamma.assert_approx_eq::<f32>(&want_gamma, Tolerance::absolute(1e-3));
    got_beta.assert_approx_eq::<f32>(&want_beta, Tolerance::absolute(1e-3));
}

/// One AdamW step by its definition, element by element on one thread.
fn adamw_by_definition(
    update: &AdamWUpdate,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    for i in 0..p.len() {
        m[i] = update.beta_1 * m[i] + (1.0 - update.beta_1) * g[i];
        v[i] = update.beta_2 * v[i] + (1.0 - update.beta_2) * (g[i] * g[i]);
        let step =
            (m[i] / update.correction_1) / ((v[i] / update.correction_2).sqrt() + update.epsilon);
        p[i] = p[i] * update.decay - step * update.lr;
    }
}

/// The scalars of AdamW's third step at learning rate 1e-2 and weight decay 0.1.
fn third_step() -> AdamWUpdate {
    AdamWUpdate {
        beta_1: 0.9,
        beta_2: 0.999,
        correction_1: 1.0 - 0.9f32.powi(3),
        correction_2: 1.0 - 0.999f32.powi(3),
        decay: 1.0 - 1e-2 * 0.1,
        lr: 1e-2,
        epsilon: 1e-8,
    }
}

#[test]
fn adamw_over_many_tasks_equals_the_definition() {
    let update = third_step();
    let count = 100_003;
    let series = |scale: f32, shift: usize| -> Vec<f32> {
        (0..count)
            .map(|i| ((i + shift) % 97) as f32 / 97.0 * scale - scale / 2.0)
            .collect()
    };
    let grad = series(2.0, 5);
    let (mut p, mut m, mut v) = (series(1.0, 0), series(0.1, 11), series(0.01, 23));
    v.iter_mut().for_each(|x| *x = x.abs());
    let (mut want_p, mut want_m, mut want_v) = (p.clone(), m.clone(), v.clone());
    update.apply(&mut p, &grad, &mut m, &mut v);
    adamw_by_definition(&update, &mut want_p, &grad, &mut want_m, &mut want_v);
    assert_eq!(p, want_p);
    assert_eq!(m, want_m);
    assert_eq!(v, want_v);
}

#[test]
fn the_adamw_step_writes_over_buffers_it_owns_and_copies_shared_ones() {
    use burn::backend::Flex;
    let update = third_step();
    let shape = burn::tensor::Shape::new([300, 200]);
    let series = |shift: usize| -> Vec<f32> {
        (0..60_000)
            .map(|i| ((i + shift) % 89) as f32 / 89.0 - 0.5)
            .collect()
    };
    let fresh = |shift| product::tensor(series(shift), shape.clone());
    // Sole owners: the results are the same buffers, holding the definition's values.
    let (param, moment_1, moment_2) = (
        fresh(0),
        fresh(7),
        product::tensor(vec![0.25; 60_000], shape.clone()),
    );
    let pointers = [&param, &moment_1, &moment_2].map(|t| flex::values(t).as_ptr());
    let (param, moment_1, moment_2) =
        <Flex as CpuOptimizerOps>::adamw_step(param, fresh(3), moment_1, moment_2, update);
    assert_eq!(
        [&param, &moment_1, &moment_2].map(|t| flex::values(t).as_ptr()),
        pointers
    );
    let (mut want_p, mut want_m, mut want_v) = (series(0), series(7), vec![0.25; 60_000]);
    adamw_by_definition(&update, &mut want_p, &series(3), &mut want_m, &mut want_v);
    assert_eq!(flex::values(&param), want_p.as_slice());
    assert_eq!(flex::values(&moment_1), want_m.as_slice());
    assert_eq!(flex::values(&moment_2), want_v.as_slice());

    // A parameter whose buffer is shared is copied, and the other holder keeps its values.
    let shared = fresh(0);
    let zeros = || product::tensor(vec![0.0; 60_000], shape.clone());
    let (param, moment_1, moment_2) =
        <Flex as CpuOptimizerOps>::adamw_step(shared.clone(), fresh(3), zeros(), zeros(), update);
    assert_ne!(
        flex::values(&param).as_ptr(),
        flex::values(&shared).as_ptr()
    );
    assert_eq!(flex::values(&shared), series(0).as_slice());
    let (mut want_p, mut want_m, mut want_v) = (series(0), vec![0.0; 60_000], vec![0.0; 60_000]);
    adamw_by_definition(&update, &mut want_p, &series(3), &mut want_m, &mut want_v);
    assert_eq!(flex::values(&param), want_p.as_slice());
    assert_eq!(flex::values(&moment_1), want_m.as_slice());
    assert_eq!(flex::values(&moment_2), want_v.as_slice());
}

#[test]
fn the_adamw_step_takes_tensors_of_any_origin_and_refuses_autodiff_ones() {
    // A gradient made by burn's own CPU operations (a buffer of its own alignment), read in
    // place; a parameter from a checkpoint-like `from_data`.
    let device = Device::flex();
    let param = Tensor::<2>::from_data(TensorData::new(vec![0.5f32; 12], [3, 4]), &device);
    let grad = Tensor::<2>::ones([3, 4], &device).mul_scalar(2.0);
    assert!(adamw_applies(&param, &grad));
    let update = third_step();
    let (param, _, _) = adamw_step(param, grad, None, update);
    let (mut want_p, mut m, mut v) = (vec![0.5f32; 12], vec![0.0; 12], vec![0.0; 12]);
    adamw_by_definition(&update, &mut want_p, &[2.0; 12], &mut m, &mut v);
    assert_eq!(param.into_data().try_into_vec::<f32>().unwrap(), want_p);
    let tracked = Tensor::<2>::ones([3, 4], &Device::flex().autodiff());
    assert!(!adamw_applies(&tracked.clone(), &tracked));
}

/// What a cast to `format` and back gives for `x`, through the `half` crate's conversions.
fn cast_round_trip(x: f32, format: NarrowFormat) -> f32 {
    match format {
        NarrowFormat::Bf16 => burn::tensor::bf16::from_f32(x).to_f32(),
        NarrowFormat::F16 => burn::tensor::f16::from_f32(x).to_f32(),
    }
}

#[test]
fn rounding_to_a_narrow_format_matches_a_cast_and_back_bit_for_bit() {
    // Every 4,099th bit pattern (both signs, zeros, subnormals of f32 and of f16, NaNs,
    // infinities), then the values that round halfway: ties go to the even neighbour.
    let mut values: Vec<f32> = (0..=u32::MAX).step_by(4_099).map(f32::from_bits).collect();
    let ties = [
        1.0 + 2f32.powi(-8),
        1.0 + 3.0 * 2f32.powi(-8),
        1.0 + 2f32.powi(-11),
        1.0 + 3.0 * 2f32.powi(-11),
        65_520.0,
        65_519.996,
        -65_520.0,
        2f32.powi(-25),
        3.0 * 2f32.powi(-25),
        2f32.powi(-14) - 2f32.powi(-25),
        f32::MAX,
        f32::MIN_POSITIVE,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -0.0,
    ];
    values.extend(ties);
    for format in [NarrowFormat::Bf16, NarrowFormat::F16] {
        let mut rounded = values.clone();
        kernels::round_to(&mut rounded, format);
        for (&x, &got) in values.iter().zip(&rounded) {
            let want = cast_round_trip(x, format);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{format:?}: {x:e} ({:#010x}) rounded to {got:e}, a cast gives {want:e}",
                x.to_bits()
            );
        }
    }
}

/// Panics unless every value of `tensor` is a value of `format`.
fn assert_in_format<const D: usize>(tensor: &Tensor<D>, format: NarrowFormat, what: &str) {
    for x in tensor.clone().into_data().try_to_vec::<f32>().unwrap() {
        assert_eq!(
            cast_round_trip(x, format).to_bits(),
            x.to_bits(),
            "{what} in {format:?}: {x:e} is not a value of the format"
        );
    }
}

#[test]
fn narrow_products_match_burns_casts_and_stay_in_the_format() {
    let device = device();
    let layer = burn::nn::LinearConfig::new(24, 40).init(&device);
    let rows =
        Tensor::<2>::random([70, 24], Distribution::Normal(0.0, 2.0), &device).require_grad();
    let weights = Tensor::<2>::random([70, 40], Distribution::Default, &device);
    // Two units in the last place of each format, relative: the casts round the bias sum
    // once more, and f32 sums in another order may round to the neighbouring value.
    for (format, ulps) in [
        (NarrowFormat::Bf16, 2f32.powi(-6)),
        (NarrowFormat::F16, 2f32.powi(-9)),
    ] {
        let dtype = format.dtype();
        // burn's own way: the operands cast down, the product and bias in the format, the
        // result cast up; each cast's backward pass casts the gradient.
        let cast_linear = || {
            burn::tensor::module::linear(
                rows.clone().cast(dtype),
                layer.weight.val().cast(dtype),
                layer.bias.as_ref().map(|bias| bias.val().cast(dtype)),
            )
            .cast(FloatDType::F32)
        };
        let cast = cast_linear();
        let narrow = narrow_linear(&layer, rows.clone(), format, false);
        assert_in_format(&narrow, format, "the output");
        let tolerance = Tolerance::rel_abs(ulps, 1e-3);
        narrow
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&cast.clone().into_data(), tolerance);
        let grads = |out: Tensor<2>| {
            let grads = weighted_sum(out, &weights).backward();
            let bias = layer.bias.as_ref().unwrap().grad(&grads).unwrap();
            (
                rows.grad(&grads).unwrap(),
                layer.weight.grad(&grads).unwrap(),
                bias,
            )
        };
        let (want_x, want_weight, _) = grads(cast);
        let (got_x, got_weight, got_bias) = grads(narrow);
        for (got, want, what) in [
            (&got_x, &want_x, "the input's gradient"),
            (&got_weight, &want_weight, "the weight's gradient"),
        ] {
            assert_in_format(got, format, what);
            got.clone()
                .into_data()
                .assert_approx_eq::<f32>(&want.clone().into_data(), tolerance);
        }
        // burn sums the bias's gradient in the narrow format, one rounding per row; the
        // fused layer sums in f32 and rounds once, so it is held to the f32 sum instead.
        assert_in_format(&got_bias, format, "the bias's gradient");
        let exact = round_to(
            round_to(weights.clone(), format).sum_dim(0).reshape([40]),
            format,
        );
        got_bias
            .into_data()
            .assert_approx_eq::<f32>(&exact.into_data(), tolerance);

        // GELU after the product: GELU (in f32) of the rounded result above, and back
        // through it, bit for bit. (burn's result above may differ from it by one unit of
        // the format, which GELU's slope can make larger than the tolerance.)
        let bits = |tensor: &Tensor<2>| {
            let values = tensor.clone().into_data().try_to_vec::<f32>().unwrap();
            values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        let separate = gelu(narrow_linear(&layer, rows.clone(), format, false));
        let fused = narrow_linear(&layer, rows.clone(), format, true);
        assert_eq!(bits(&fused), bits(&separate), "GELU's output in {format:?}");
        let (want_x, want_weight, want_bias) = grads(separate);
        let (got_x, got_weight, got_bias) = grads(fused);
        let [got_bias, want_bias] = [got_bias, want_bias].map(|bias| bias.reshape([1, 40]));
        for (got, want, what) in [
            (got_x, want_x, "input"),
            (got_weight, want_weight, "weight"),
            (got_bias, want_bias, "bias"),
        ] {
            let message = format!("the {what}'s gradient through GELU in {format:?}");
            assert_eq!(bits(&got), bits(&want), "{message}");
        }

        // The attention's products: batches of matrices.
        let query =
            Tensor::<4>::random([2, 3, 7, 5], Distribution::Default, &device).require_grad();
        let key = Tensor::<4>::random([2, 3, 5, 6], Distribution::Default, &device);
        let cast = query
            .clone()
            .cast(dtype)
            .matmul(key.clone().cast(dtype))
            .cast(FloatDType::F32);
        let narrow = narrow_matmul(query.clone(), key.clone(), format);
        assert_in_format(&narrow, format, "the batched product");
        narrow
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&cast.clone().into_data(), tolerance);
        let query_grad = |out: Tensor<4>| query.grad(&out.sum().backward()).unwrap();
        let got = query_grad(narrow);
        assert_in_format(&got, format, "the query's gradient");
        got.into_data()
            .assert_approx_eq::<f32>(&query_grad(cast).into_data(), tolerance);
    }
}
