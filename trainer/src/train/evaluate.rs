//! What a run measures besides its training loss: loss and accuracy on a split, and the
//! attention maps of its probe sentences.

use super::sentences::{EncodedSplit, Padding, labels_tensor};
use crate::model::{BatchTensors, SequenceClassifier};
use crate::tokenize::Encoding;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Int, Tensor};
use run_protocol::Event;

/// Sentences per evaluation batch.
const EVAL_BATCH: usize = 64;

/// Mean loss and accuracy of `model` (an inference copy) on `split`.
pub(super) fn evaluate(
    model: &SequenceClassifier,
    split: &EncodedSplit,
    padding: &Padding,
    device: &Device,
) -> (f64, f64) {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    // Sums stay on the device and are read back once: on a GPU each read waits for the queue.
    let mut loss_sum = Tensor::<1>::zeros([1], device);
    let mut correct = Tensor::<1, Int>::zeros([1], device);
    for (encodings, labels) in split
        .encodings
        .chunks(EVAL_BATCH)
        .zip(split.labels.chunks(EVAL_BATCH))
    {
        let batch = BatchTensors::new(&padding.apply(encodings), device);
        let logits = model.forward(&batch);
        let targets = labels_tensor(labels, device);
        loss_sum = loss_sum.add(
            loss_fn
                .forward(logits.clone(), targets.clone())
                .mul_scalar(labels.len() as f32),
        );
        correct = correct.add(
            logits
                .argmax(1)
                .reshape([labels.len()])
                .equal(targets)
                .int()
                .sum(),
        );
    }
    let n = split.labels.len().max(1) as f64;
    let loss_sum = loss_sum.into_scalar::<f32>() as f64;
    let correct = correct.into_scalar::<i64>();
    (loss_sum / n, correct as f64 / n)
}

/// Emits the attention maps of each probe sentence.
pub(super) fn emit_attention(
    model: &SequenceClassifier,
    probes: &[(String, Encoding)],
    step: usize,
    device: &Device,
    emit: &mut dyn FnMut(Event),
) {
    for (sentence, encoding) in probes {
        let matrices = crate::inference::attention_matrices(model, encoding, device);
        emit(Event::Attention {
            step,
            sentence: sentence.clone(),
            tokens: encoding.tokens.clone(),
            matrices,
        });
    }
}
