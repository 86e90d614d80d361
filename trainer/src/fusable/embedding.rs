//! A word-embedding lookup whose backward pass runs in parallel on a GPU, with a fixed
//! order of additions.
//!
//! burn's embedding gradient adds each token's gradient into a zeroed `[words, width]`
//! table with `select_assign`, which a cubecl backend runs as one thread per column
//! (384 for MiniLM), each walking every token of the batch in turn: 4,096 for a 128 x 32
//! batch, the slowest kernel per launch of a MiniLM step on an H200 (about 2.4 ms a step,
//! docs/benchmarks.md). Here the host, which knows the batch's token ids, numbers the
//! batch's distinct words; the backward pass then sums each distinct word's gradient with
//! one matrix product (`one_hotᵀ · gradient`, a row per distinct word and zero rows after) and
//! spreads the sums over the table with one gather (each word reads its own row, or the
//! zero row). Both are parallel over the output, and neither adds in an order that varies
//! from run to run, as atomic additions would.
//!
//! The operation is a burn backend extension of the cubecl backend and its autodiff
//! wrapper. In the tests it also runs on the CPU backend, where burn's embedding checks
//! it (training on the CPU keeps burn's lookup, whose gradient is cheaper there than a
//! matrix product).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, backend_extension};

/// The word-embedding lookup with its own backward pass, as a burn backend extension (see
/// the module documentation).
#[backend_extension(Cube: cfg(any(feature = "wgpu", feature = "cuda")), Flex: cfg(test), Autodiff)]
pub trait FusableEmbeddingOps: Backend {
    /// The rows of `weights` (`[words, width]`) at `ids` (`[tokens]`), `[tokens, width]`.
    /// For the backward pass, constants: `one_hot` (`[tokens, numbers]`, `numbers` more
    /// than the batch's distinct words) is 1 where a token is the batch's d-th distinct
    /// word, and `slots` (`[words]`) gives each word its number, or one with no token (a
    /// zero row of the sums) for a word the batch does not hold.
    fn fusable_embedding(
        weights: FloatTensor<Self>,
        ids: IntTensor<Self>,
        one_hot: FloatTensor<Self>,
        slots: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let _ = (one_hot, slots);
        Self::float_select(weights, 0, ids)
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl FusableEmbeddingOps for burn::backend::Cube {}

#[cfg(test)]
impl FusableEmbeddingOps for burn::backend::Flex {}

/// The lookup's backward pass to the weights; keeps the one-hot matrix and the slots.
#[derive(Debug)]
struct EmbeddingBackward;

impl<B: Backend> Backward<B, 1> for EmbeddingBackward {
    type State = (FloatTensor<B>, IntTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (one_hot, slots) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            // Each distinct word's summed gradient, then the zero row.
            let sums = B::float_matmul(B::float_transpose(one_hot), grad);
            B::float_select(sums, 0, slots)
        });
    }
}

impl<B: Backend, C: CheckpointStrategy> FusableEmbeddingOps for Autodiff<B, C> {
    fn fusable_embedding(
        weights: FloatTensor<Self>,
        ids: IntTensor<Self>,
        one_hot: FloatTensor<Self>,
        slots: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        debug_assert!(
            !one_hot.is_tracked(),
            "the one-hot matrix must not need a gradient"
        );
        let node = weights.node();
        let out = B::float_select(weights.into_primitive(), 0, ids);
        match EmbeddingBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((one_hot.into_primitive(), slots), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

/// A training batch's distinct token ids, numbered on the host, from which a GPU sums the
/// word embeddings' gradient in parallel ([`super::embedding`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DistinctWords {
    /// The distinct ids, ascending.
    distinct: Vec<u32>,
    /// Each token's position in `distinct`, row by row.
    token_slots: Vec<i64>,
}

impl DistinctWords {
    /// The distinct words of a batch's token `ids`.
    pub fn of(ids: &[u32]) -> Self {
        let mut distinct = ids.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let token_slots = ids
            .iter()
            .map(|id| distinct.partition_point(|d| d < id) as i64)
            .collect();
        Self {
            distinct,
            token_slots,
        }
    }

    /// How many distinct words the batch holds.
    pub fn count(&self) -> usize {
        self.distinct.len()
    }

    /// Each token's position among the distinct words, row by row.
    pub fn token_slots(&self) -> &[i64] {
        &self.token_slots
    }

    /// For each of a vocabulary's `words`, its position among the distinct words, or
    /// [`Self::count`] where the batch does not hold it.
    pub fn slots(&self, words: usize) -> Vec<i64> {
        let mut slots = vec![self.distinct.len() as i64; words];
        for (position, &id) in self.distinct.iter().enumerate() {
            if let Some(slot) = slots.get_mut(id as usize) {
                *slot = position as i64;
            }
        }
        slots
    }
}
