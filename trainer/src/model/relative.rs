//! DeBERTa's disentangled attention: besides the content-to-content score `q·k`, each
//! query-key pair gets a content-to-position score (the query against the key's relative
//! position) and a position-to-content score (the key against the query's), looked up in
//! one table of relative-position vectors that every layer shares. Distances beyond half
//! the bucket count share log-spaced buckets, as in HF's `make_log_bucket_position`.

use super::config::{EncoderConfig, RelativeAttention};
use super::precision::{self, Precision};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// The relative-position table all layers share (HF's `encoder.rel_embeddings`), with its
/// LayerNorm (`encoder.LayerNorm`) where the config asks for one.
#[derive(Module, Debug)]
pub struct RelativeTable {
    /// `2 × span` position vectors, nearest the query in the middle.
    pub table: Embedding,
    /// LayerNorm over every row of the table.
    pub norm: Option<LayerNorm>,
    #[module(skip)]
    settings: RelativeAttention,
}

/// What each layer's attention needs for one batch: the table's rows and, for every
/// query-key pair, the row each score term reads.
#[derive(Debug, Clone)]
pub struct RelativePositions {
    /// The normalised table `[2 × span, hidden]`.
    pub rows: Tensor<2>,
    /// Row of the key's position relative to the query, `[batch, heads, query, key]`.
    pub content_to_position: Tensor<4, Int>,
    /// Row of the query's position relative to the key, `[batch, heads, key, query]`.
    pub position_to_content: Tensor<4, Int>,
    /// The config's settings.
    pub settings: RelativeAttention,
}

impl RelativeTable {
    /// A randomly initialised table for `config`, which must have relative attention.
    pub fn new(config: &EncoderConfig, settings: RelativeAttention, device: &Device) -> Self {
        Self {
            table: EmbeddingConfig::new(2 * settings.span(), config.hidden_size).init(device),
            norm: settings.normalized.then(|| {
                LayerNormConfig::new(config.hidden_size)
                    .with_epsilon(config.layer_norm_eps)
                    .init(device)
            }),
            settings,
        }
    }

    /// The table and the lookup indices for `batch` sequences of `seq_len` tokens.
    pub fn positions(&self, batch: usize, heads: usize, seq_len: usize) -> RelativePositions {
        let rows = self.table.weight.val();
        let device = rows.device();
        let rows = match &self.norm {
            Some(norm) => norm.forward(rows),
            None => rows,
        };
        let span = self.settings.span() as i64;
        let relative = relative_positions(seq_len, &self.settings);
        let index = |sign: i64| {
            let values: Vec<i64> = relative
                .iter()
                .map(|&distance| (sign * distance + span).clamp(0, 2 * span - 1))
                .collect();
            Tensor::<2, Int>::from_data(TensorData::new(values, [seq_len, seq_len]), &device)
                .reshape([1, 1, seq_len, seq_len])
                .expand([batch, heads, seq_len, seq_len])
        };
        RelativePositions {
            rows,
            content_to_position: index(1),
            position_to_content: index(-1),
            settings: self.settings,
        }
    }
}

/// Every query-key distance `query − key` of a `seq_len`-token sequence, row by row, put
/// into buckets when the settings have them. The matrix depends on the distance alone, so
/// each of the `2 × seq_len − 1` distances is bucketed once and every row is a slice of
/// those, read backwards.
fn relative_positions(seq_len: usize, settings: &RelativeAttention) -> Vec<i64> {
    let longest = seq_len as i64 - 1;
    // `bucketed[i]` is the bucket of the distance `i − longest`.
    let bucketed: Vec<i64> = (-longest..=longest)
        .map(|distance| bucket(distance, settings))
        .collect();
    let mut distances = Vec::with_capacity(seq_len * seq_len);
    // Row `query` holds the distances `query − 0` down to `query − longest`.
    for query in 0..seq_len {
        distances.extend(bucketed[query..query + seq_len].iter().rev());
    }
    distances
}

/// The row offset of the distance `query − key`: the distance itself, or its log bucket
/// when the settings have buckets.
fn bucket(distance: i64, settings: &RelativeAttention) -> i64 {
    if settings.position_buckets > 0 {
        log_bucket(
            distance,
            settings.position_buckets,
            settings.max_relative_positions,
        )
    } else {
        distance
    }
}

/// HF's `make_log_bucket_position` for one distance, in the same f32 arithmetic: within
/// half the bucket count a distance is its own bucket; beyond it, buckets widen
/// logarithmically until `max_position`.
fn log_bucket(distance: i64, buckets: usize, max_position: usize) -> i64 {
    let mid = (buckets / 2) as i64;
    let magnitude = if distance < mid && distance > -mid {
        mid - 1
    } else {
        distance.abs()
    };
    if magnitude <= mid {
        return distance;
    }
    let mid_f = mid as f32;
    let ratio = ((max_position as f64 - 1.0) / mid as f64) as f32;
    let log_position =
        ((magnitude as f32 / mid_f).ln() / ratio.ln() * (mid - 1) as f32).ceil() + mid_f;
    (log_position * distance.signum() as f32) as i64
}

/// The content-to-position and position-to-content scores of one layer, `[batch, heads,
/// query, key]`, before the division by the score scale. `query` and `key` are the layer's
/// projections `[batch, heads, seq, head_dim]`; `position_query` and `position_key` are the
/// table's rows through the projections each term uses, `[2 × span, hidden]`. The products
/// run in `precision`.
pub fn position_scores(
    query: &Tensor<4>,
    key: &Tensor<4>,
    position_query: Option<Tensor<2>>,
    position_key: Option<Tensor<2>>,
    positions: &RelativePositions,
    precision: Precision,
) -> Option<Tensor<4>> {
    let [batch, heads, _, head_dim] = query.dims();
    let split = |rows: Tensor<2>| {
        let [count, _] = rows.dims();
        rows.reshape([1, count, heads, head_dim])
            .swap_dims(1, 2)
            .expand([batch, heads, count, head_dim])
    };
    let content_to_position = position_key.map(|rows| {
        precision::matmul(query.clone(), split(rows).transpose(), precision)
            .gather(3, positions.content_to_position.clone())
    });
    let position_to_content = position_query.map(|rows| {
        precision::matmul(key.clone(), split(rows).transpose(), precision)
            .gather(3, positions.position_to_content.clone())
            .swap_dims(2, 3)
    });
    match (content_to_position, position_to_content) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distances in 1..=700 at which the bucket grows, as transformers 5.24's
    /// `make_log_bucket_position(torch.arange(-700, 701), buckets, max_position)` gives them
    /// (every distance up to half the buckets is its own bucket).
    fn bucket_changes(buckets: usize, max_position: usize) -> Vec<i64> {
        (1..=700)
            .filter(|&d| {
                log_bucket(d, buckets, max_position) != log_bucket(d - 1, buckets, max_position)
            })
            .collect()
    }

    #[test]
    fn buckets_match_transformers() {
        assert_eq!(bucket_changes(8, 64), [1, 2, 3, 4, 5, 11, 26, 64, 158, 396]);
        let expected: Vec<i64> = (1..=131).chain(DEBERTA_V3_CHANGES).collect();
        assert_eq!(bucket_changes(256, 512), expected);
        assert_eq!(log_bucket(700, 256, 512), 284);
        for distance in 0..=700 {
            assert_eq!(
                log_bucket(-distance, 256, 512),
                -log_bucket(distance, 256, 512)
            );
        }
    }

    #[test]
    fn each_row_holds_the_distances_from_its_query() {
        for (buckets, max_position) in [(0, 24), (8, 64), (256, 512)] {
            let settings = RelativeAttention {
                position_buckets: buckets,
                max_relative_positions: max_position,
                content_to_position: true,
                position_to_content: true,
                share_projections: true,
                normalized: true,
            };
            for seq_len in [1, 2, 7, 40, 300] {
                let matrix = relative_positions(seq_len, &settings);
                assert_eq!(matrix.len(), seq_len * seq_len);
                for query in 0..seq_len {
                    for key in 0..seq_len {
                        let expected = bucket(query as i64 - key as i64, &settings);
                        assert_eq!(matrix[query * seq_len + key], expected, "{query}, {key}");
                    }
                }
            }
        }
    }

    /// deberta-v3's settings (256 buckets, 512 positions), past distance 131.
    const DEBERTA_V3_CHANGES: [i64; 153] = [
        133, 134, 136, 137, 139, 140, 142, 143, 145, 146, 148, 150, 151, 153, 155, 156, 158, 160,
        161, 163, 165, 167, 169, 170, 172, 174, 176, 178, 180, 182, 184, 186, 188, 190, 192, 194,
        196, 198, 201, 203, 205, 207, 210, 212, 214, 216, 219, 221, 224, 226, 229, 231, 234, 236,
        239, 241, 244, 247, 249, 252, 255, 258, 260, 263, 266, 269, 272, 275, 278, 281, 284, 287,
        290, 294, 297, 300, 303, 307, 310, 313, 317, 320, 324, 327, 331, 335, 338, 342, 346, 349,
        353, 357, 361, 365, 369, 373, 377, 381, 385, 390, 394, 398, 403, 407, 411, 416, 420, 425,
        430, 434, 439, 444, 449, 454, 459, 464, 469, 474, 479, 484, 490, 495, 500, 506, 512, 517,
        523, 528, 534, 540, 546, 552, 558, 564, 570, 577, 583, 589, 596, 602, 609, 616, 622, 629,
        636, 643, 650, 657, 664, 672, 679, 686, 694,
    ];
}
