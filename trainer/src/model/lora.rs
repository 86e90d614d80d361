//! LoRA as PEFT implements it: a trainable low-rank branch beside a frozen projection,
//! `y = W x + (alpha / r) · B A dropout(x)`. burn's own LoRA adapts the weight itself
//! (`W + s · A B`), which leaves no place for PEFT's dropout on the branch input; this
//! module has one.

use super::dropout::Noise;
use super::precision::{self, Precision};
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear};
use burn::tensor::{Device, Tensor};

pub use run_protocol::LoraSettings;

/// The low-rank branch added to one projection.
#[derive(Module, Debug)]
pub struct LoraBranch {
    /// Down-projection `[d_in, r]`, initialised as PEFT does (Kaiming uniform, a = √5).
    pub down: Param<Tensor<2>>,
    /// Up-projection `[r, d_out]`, zero at first so training starts from the base model.
    pub up: Param<Tensor<2>>,
    dropout: Dropout,
    #[module(skip)]
    scale: f64,
}

impl LoraBranch {
    /// A new branch for a `d_in` → `d_out` projection.
    pub fn new(d_in: usize, d_out: usize, settings: LoraSettings, device: &Device) -> Self {
        // PEFT's kaiming_uniform_(a=√5) on a [r, d_in] matrix draws from ±1/√d_in.
        let bound = 1.0 / (d_in as f64).sqrt();
        Self {
            down: Initializer::Uniform {
                min: -bound,
                max: bound,
            }
            .init([d_in, settings.rank], device),
            up: Initializer::Zeros.init([settings.rank, d_out], device),
            dropout: DropoutConfig::new(settings.dropout).init(),
            scale: settings.alpha / settings.rank as f64,
        }
    }

    /// The branch's contribution for the token rows `rows` (`[tokens, d_in]`), its
    /// products in `precision`, its dropout's mask from `noise` where planned there.
    pub fn forward(&self, rows: Tensor<2>, precision: Precision, noise: &Noise) -> Tensor<2> {
        let down = precision::matmul(noise.apply(&self.dropout, rows), self.down.val(), precision);
        precision::matmul(down, self.up.val(), precision).mul_scalar(self.scale)
    }

    /// The dropout on the branch's input rows.
    pub fn dropout(&self) -> &Dropout {
        &self.dropout
    }

    /// Folds the branch into `linear`'s weight (`W + s · A B`, burn's `[d_in, d_out]` layout),
    /// which gives the same outputs without the branch.
    pub fn merge_into(&self, linear: Linear) -> Linear {
        let delta = self.down.val().matmul(self.up.val()).mul_scalar(self.scale);
        Linear {
            weight: linear.weight.map(|weight| weight + delta),
            ..linear
        }
    }
}

/// `linear(x)`, plus the LoRA branch when there is one, over every token (see
/// [`token_wise`]), the products in `precision`, the branch's dropout mask from `noise`.
pub fn project(
    linear: &Linear,
    lora: Option<&LoraBranch>,
    x: Tensor<3>,
    precision: Precision,
    noise: &Noise,
) -> Tensor<3> {
    over_tokens(x, |rows| match lora {
        Some(branch) => {
            precision::linear(linear, rows.clone(), precision)
                + branch.forward(rows, precision, noise)
        }
        None => precision::linear(linear, rows, precision),
    })
}

/// `linear` applied to every token of `x` (`[batch, seq, d_in]`) as one `[batch·seq, d_in]`
/// matrix product. Given the 3-D input, burn keeps `batch` separate products whenever `seq`
/// is a multiple of 32, which on the CPU packs the weight once per sentence and splits the
/// work by sentence. The product runs in `precision`.
pub fn token_wise(linear: &Linear, x: Tensor<3>, precision: Precision) -> Tensor<3> {
    over_tokens(x, |rows| precision::linear(linear, rows, precision))
}

/// `linear` then exact GELU applied to every token of `x` as [`token_wise`] does.
pub fn token_wise_gelu(linear: &Linear, x: Tensor<3>, precision: Precision) -> Tensor<3> {
    over_tokens(x, |rows| precision::linear_gelu(linear, rows, precision))
}

/// `per_row` applied to `x` (`[batch, seq, d_in]`) seen as one row per token
/// (`[batch·seq, d_in]`, a view), its `[batch·seq, d_out]` result shaped back by sentence.
fn over_tokens(x: Tensor<3>, per_row: impl FnOnce(Tensor<2>) -> Tensor<2>) -> Tensor<3> {
    let [batch, seq_len, d_in] = x.dims();
    let out = per_row(x.reshape([batch * seq_len, d_in]));
    let d_out = out.dims()[1];
    out.reshape([batch, seq_len, d_out])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    fn device() -> Device {
        Device::flex()
    }

    fn settings(dropout: f64) -> LoraSettings {
        LoraSettings {
            rank: 4,
            alpha: 8.0,
            dropout,
        }
    }

    #[test]
    fn token_wise_gives_the_linear_layers_own_outputs_and_gradients() {
        // 32 tokens per sentence: the shape burn keeps as one product per sentence.
        let device = Device::flex().autodiff();
        let linear = LinearConfig::new(6, 5).init(&device);
        let x = Tensor::<3>::random([3, 32, 6], Distribution::Default, &device).require_grad();
        let expected = linear.forward(x.clone());
        let got = token_wise(&linear, x.clone(), Precision::Fp32);
        assert_eq!(got.dims(), [3, 32, 5]);
        got.clone().into_data().assert_approx_eq::<f32>(
            &expected.clone().into_data(),
            burn::tensor::Tolerance::absolute(1e-6),
        );
        let gradients = |out: Tensor<3>| {
            let grads = out.powf_scalar(2.0).sum().backward();
            let weight = linear.weight.grad(&grads).unwrap().into_data();
            (weight, x.grad(&grads).unwrap().into_data())
        };
        let (expected_weight, expected_input) = gradients(expected);
        let (weight, input) = gradients(got);
        weight.assert_approx_eq::<f32>(&expected_weight, burn::tensor::Tolerance::absolute(1e-4));
        input.assert_approx_eq::<f32>(&expected_input, burn::tensor::Tolerance::absolute(1e-5));
    }

    #[test]
    fn a_new_branch_leaves_the_projection_unchanged() {
        let device = device();
        let linear = LinearConfig::new(6, 5).init(&device);
        let branch = LoraBranch::new(6, 5, settings(0.0), &device);
        let x = Tensor::<3>::random([2, 3, 6], Distribution::Default, &device);
        let plain = linear.forward(x.clone());
        let adapted = project(&linear, Some(&branch), x, Precision::Fp32, &Noise::none());
        plain.into_data().assert_approx_eq::<f32>(
            &adapted.into_data(),
            burn::tensor::Tolerance::absolute(1e-6),
        );
    }

    #[test]
    fn merging_gives_the_same_outputs_as_the_branch() {
        let device = device();
        let linear = LinearConfig::new(6, 5).init(&device);
        let mut branch = LoraBranch::new(6, 5, settings(0.0), &device);
        branch.up = Param::from_tensor(Tensor::random([4, 5], Distribution::Default, &device));
        let x = Tensor::<3>::random([2, 3, 6], Distribution::Default, &device);
        let with_branch = project(
            &linear,
            Some(&branch),
            x.clone(),
            Precision::Fp32,
            &Noise::none(),
        );
        let merged = branch.merge_into(linear).forward(x);
        with_branch
            .into_data()
            .assert_approx_eq::<f32>(&merged.into_data(), burn::tensor::Tolerance::absolute(1e-5));
    }

    #[test]
    fn dropout_acts_on_the_branch_only_while_training() {
        let device = device();
        let training = device.clone().autodiff();
        let mut branch = LoraBranch::new(16, 8, settings(0.5), &training);
        branch.up = Param::from_tensor(Tensor::ones([4, 8], &training));
        let x = Tensor::<2>::ones([4, 16], &training);
        let branch_only = |b: &LoraBranch, x: Tensor<2>| {
            b.forward(x, Precision::Fp32, &Noise::none())
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        // While training, dropout zeroes some inputs of the branch, so rows differ.
        let trained = branch_only(&branch, x.clone());
        let row = 8;
        assert!(
            (0..4).any(|r| trained[r * row..(r + 1) * row] != trained[..row]),
            "dropout left every row of the branch identical: {trained:?}"
        );
        // In evaluation the branch is deterministic.
        let evaluated = branch_only(&branch.valid(), Tensor::ones([4, 16], &device));
        assert!(
            (0..4).all(|r| evaluated[r * row..(r + 1) * row] == evaluated[..row]),
            "{evaluated:?}"
        );
    }
}
