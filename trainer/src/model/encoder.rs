//! The post-LayerNorm transformer encoder layer every family shares: multi-head
//! self-attention (with DeBERTa's relative-position terms where the model has them), then an
//! exact-GELU feed-forward block, each followed by a residual connection and LayerNorm.

use super::PaddingMask;
use super::config::{EncoderConfig, RelativeAttention};
use super::dropout::Noise;
use super::lora::{LoraBranch, LoraSettings, project, token_wise, token_wise_gelu};
use super::precision::{self, Precision};
use super::relative::{RelativePositions, position_scores};
use crate::cpu;
use crate::device::on_cpu_backend;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor};

/// Multi-head self-attention with its output projection and LayerNorm.
#[derive(Module, Debug)]
pub struct SelfAttention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Projection of the concatenated heads.
    pub output: Linear,
    /// LayerNorm after the residual.
    pub norm: LayerNorm,
    /// LoRA branch beside the query projection, while LoRA trains.
    pub query_lora: Option<LoraBranch>,
    /// LoRA branch beside the value projection, while LoRA trains.
    pub value_lora: Option<LoraBranch>,
    /// DeBERTa without shared keys: the relative positions' own query projection.
    pub position_query: Option<Linear>,
    /// DeBERTa without shared keys: the relative positions' own key projection.
    pub position_key: Option<Linear>,
    probability_dropout: Dropout,
    output_dropout: Dropout,
    /// DeBERTa's dropout on the relative-position rows, drawn once per layer.
    position_dropout: Dropout,
    #[module(skip)]
    num_heads: usize,
    /// The LayerNorm's epsilon (burn keeps the module's own private).
    #[module(skip)]
    norm_epsilon: f64,
}

impl SelfAttention {
    fn new(config: &EncoderConfig, device: &Device) -> Self {
        let linear = || LinearConfig::new(config.hidden_size, config.hidden_size).init(device);
        let own = |wanted: fn(&RelativeAttention) -> bool| {
            config
                .relative
                .filter(|r| !r.share_projections && wanted(r))
                .map(|_| linear())
        };
        Self {
            position_query: own(|r| r.position_to_content),
            position_key: own(|r| r.content_to_position),
            query: linear(),
            key: linear(),
            value: linear(),
            output: linear(),
            norm: LayerNormConfig::new(config.hidden_size)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
            query_lora: None,
            value_lora: None,
            probability_dropout: DropoutConfig::new(config.attention_dropout).init(),
            output_dropout: DropoutConfig::new(config.hidden_dropout).init(),
            position_dropout: DropoutConfig::new(config.hidden_dropout).init(),
            num_heads: config.num_heads,
            norm_epsilon: config.layer_norm_eps,
        }
    }

    /// Attends over `x` (`[batch, seq, hidden]`), keeping padding out as `mask` says and
    /// adding DeBERTa's relative-position scores when `relative` is given, with its matrix
    /// products in `precision` and its dropout masks from `noise` (see
    /// [`SelfAttention::dropouts`]). Returns the new hidden states and, when asked, the
    /// attention probabilities `[batch, heads, seq, seq]`.
    fn forward(
        &self,
        x: Tensor<3>,
        mask: &PaddingMask,
        relative: Option<&RelativePositions>,
        keep_probabilities: bool,
        precision: Precision,
        noise: &Noise,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        let [batch, seq_len, hidden] = x.dims();
        let head_dim = hidden / self.num_heads;
        let split_heads = |t: Tensor<3>| {
            t.reshape([batch, seq_len, self.num_heads, head_dim])
                .swap_dims(1, 2)
        };
        let query = split_heads(project(
            &self.query,
            self.query_lora.as_ref(),
            x.clone(),
            precision,
            noise,
        ));
        let key = split_heads(token_wise(&self.key, x.clone(), precision));
        let value = split_heads(project(
            &self.value,
            self.value_lora.as_ref(),
            x.clone(),
            precision,
            noise,
        ));
        let device = x.device();
        let fused = match (mask, relative) {
            (PaddingMask::KeyBias(bias), None)
                if !keep_probabilities && !device.is_autodiff() && on_cpu_backend(&device) =>
            {
                Some(bias)
            }
            _ => None,
        };
        let (context, kept) = if let Some(bias) = fused {
            // Inference on the CPU without attention maps: burn's fused kernel computes the
            // same softmax(QKᵀ/√d + bias)·V a tile at a time, never holding the
            // [batch, heads, seq, seq] scores. (On a GPU the fused kernel takes no additive
            // bias, so the GPU keeps the path below.)
            let bias = bias.clone().expand([batch, 1, seq_len, seq_len]);
            let options = AttentionModuleOptions::default();
            (
                attention(query, key, value, None, Some(bias), options),
                None,
            )
        } else {
            let mut scores = precision::matmul(query.clone(), key.clone().transpose(), precision);
            let mut terms = 1;
            if let Some(positions) = relative {
                terms = positions.settings.score_terms();
                // As transformers: one dropout mask on the rows per layer, for both terms.
                let rows = noise.apply(&self.position_dropout, positions.rows.clone());
                if let Some(extra) = position_scores(
                    &query,
                    &key,
                    self.position_projection(positions, &rows, true, precision),
                    self.position_projection(positions, &rows, false, precision),
                    positions,
                    precision,
                ) {
                    scores = scores + extra;
                }
            }
            let divisor = ((head_dim * terms) as f64).sqrt();
            let probabilities = match mask {
                PaddingMask::KeyBias(bias) => cpu::attention_softmax(scores, divisor, bias),
                PaddingMask::PairFill(padding) => softmax(
                    scores.div_scalar(divisor).mask_fill(
                        padding
                            .clone()
                            .expand([batch, self.num_heads, seq_len, seq_len]),
                        f32::MIN,
                    ),
                    3,
                ),
            };
            let kept = keep_probabilities.then(|| probabilities.clone());
            let context = precision::matmul(
                noise.apply(&self.probability_dropout, probabilities),
                value,
                precision,
            );
            (context, kept)
        };
        let context = context.swap_dims(1, 2).reshape([batch, seq_len, hidden]);
        let out = noise.apply(
            &self.output_dropout,
            token_wise(&self.output, context, precision),
        );
        (
            cpu::residual_layer_norm(&self.norm, self.norm_epsilon, out, x),
            kept,
        )
    }

    /// The relative-position `rows` (after this layer's dropout) through the projection one
    /// score term uses: the query side for position-to-content, the key side for
    /// content-to-position. With shared keys these are the layer's own query (LoRA included)
    /// and key projections. The products run in `precision`.
    fn position_projection(
        &self,
        positions: &RelativePositions,
        rows: &Tensor<2>,
        query_side: bool,
        precision: Precision,
    ) -> Option<Tensor<2>> {
        let settings = positions.settings;
        let wanted = if query_side {
            settings.position_to_content
        } else {
            settings.content_to_position
        };
        if !wanted {
            return None;
        }
        let [count, hidden] = rows.dims();
        let rows3 = rows.clone().reshape([1, count, hidden]);
        let projected = match (settings.share_projections, query_side) {
            (true, true) => project(
                &self.query,
                self.query_lora.as_ref(),
                rows3,
                precision,
                &Noise::none(),
            ),
            (true, false) => token_wise(&self.key, rows3, precision),
            (false, true) => token_wise(self.position_query.as_ref()?, rows3, precision),
            (false, false) => token_wise(self.position_key.as_ref()?, rows3, precision),
        };
        Some(projected.reshape([count, hidden]))
    }

    /// The dropouts [`SelfAttention::forward`] takes from its noise, in the order it
    /// applies them, each with its input's size for `batch` sequences of `seq_len` tokens:
    /// the LoRA branches' on the tokens, DeBERTa's on the `relative` position rows, the
    /// attention probabilities', the output's.
    fn dropouts(
        &self,
        batch: usize,
        seq_len: usize,
        relative: Option<&RelativePositions>,
    ) -> Vec<(&Dropout, usize)> {
        let [hidden, _] = self.query.weight.val().dims();
        let tokens = batch * seq_len * hidden;
        let branches = [&self.query_lora, &self.value_lora];
        let mut dropouts: Vec<(&Dropout, usize)> = branches
            .into_iter()
            .flatten()
            .map(|branch| (branch.dropout(), tokens))
            .collect();
        if let Some(positions) = relative {
            let rows = positions.rows.shape().num_elements();
            dropouts.push((&self.position_dropout, rows));
        }
        dropouts.push((
            &self.probability_dropout,
            batch * self.num_heads * seq_len * seq_len,
        ));
        dropouts.push((&self.output_dropout, tokens));
        dropouts
    }

    /// Adds fresh LoRA branches beside the query and value projections.
    fn with_lora(self, settings: LoraSettings, device: &Device) -> Self {
        let [hidden, _] = self.query.weight.val().dims();
        Self {
            query_lora: Some(LoraBranch::new(hidden, hidden, settings, device)),
            value_lora: Some(LoraBranch::new(hidden, hidden, settings, device)),
            ..self
        }
    }

    /// Folds any LoRA branches into the projections' weights and drops them.
    fn merge_lora(self) -> Self {
        let fold = |linear: Linear, branch: Option<LoraBranch>| match branch {
            Some(branch) => branch.merge_into(linear),
            None => linear,
        };
        Self {
            query: fold(self.query, self.query_lora),
            value: fold(self.value, self.value_lora),
            query_lora: None,
            value_lora: None,
            ..self
        }
    }
}

/// One encoder layer.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    /// Self-attention block.
    pub attention: SelfAttention,
    /// Feed-forward expansion.
    pub ffn_in: Linear,
    /// Feed-forward projection back to the hidden size.
    pub ffn_out: Linear,
    /// LayerNorm after the feed-forward residual.
    pub ffn_norm: LayerNorm,
    dropout: Dropout,
    /// The LayerNorm's epsilon.
    #[module(skip)]
    norm_epsilon: f64,
}

impl EncoderLayer {
    /// A randomly initialised layer for `config`.
    pub fn new(config: &EncoderConfig, device: &Device) -> Self {
        Self {
            attention: SelfAttention::new(config, device),
            ffn_in: LinearConfig::new(config.hidden_size, config.intermediate_size).init(device),
            ffn_out: LinearConfig::new(config.intermediate_size, config.hidden_size).init(device),
            ffn_norm: LayerNormConfig::new(config.hidden_size)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
            dropout: DropoutConfig::new(config.hidden_dropout).init(),
            norm_epsilon: config.layer_norm_eps,
        }
    }

    /// Runs the layer, its matrix products in `precision`, the masks of its dropouts from
    /// one draw of [`Noise`]; see [`SelfAttention`] for the other arguments.
    pub fn forward(
        &self,
        x: Tensor<3>,
        mask: &PaddingMask,
        relative: Option<&RelativePositions>,
        keep_probabilities: bool,
        precision: Precision,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        let [batch, seq_len, hidden] = x.dims();
        let mut dropouts = self.attention.dropouts(batch, seq_len, relative);
        dropouts.push((&self.dropout, batch * seq_len * hidden));
        let noise = Noise::draw(&x.device(), &dropouts);
        let (x, probabilities) =
            self.attention
                .forward(x, mask, relative, keep_probabilities, precision, &noise);
        let expanded = token_wise_gelu(&self.ffn_in, x.clone(), precision);
        let ffn = noise.apply(
            &self.dropout,
            token_wise(&self.ffn_out, expanded, precision),
        );
        (
            cpu::residual_layer_norm(&self.ffn_norm, self.norm_epsilon, ffn, x),
            probabilities,
        )
    }

    /// Adds fresh LoRA branches beside the attention's query and value projections.
    pub fn with_lora(self, settings: LoraSettings, device: &Device) -> Self {
        Self {
            attention: self.attention.with_lora(settings, device),
            ..self
        }
    }

    /// Folds the layer's LoRA branches into its weights.
    pub fn merge_lora(self) -> Self {
        Self {
            attention: self.attention.merge_lora(),
            ..self
        }
    }
}
