//! A run's loss and validation curves, read back from its stored events.

use super::MAX_CURVE_POINTS;
use super::event_log::EventLog;
use crate::db::DbPool;
use crate::error::AppError;
use run_protocol::{EvalSplit, Event, EventKind};

/// A run's stored loss and validation curves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossCurves {
    /// (step, training loss), at most [`MAX_CURVE_POINTS`] evenly spaced points.
    pub loss: Vec<(f64, f64)>,
    /// (step, validation loss) per evaluation.
    pub validation_loss: Vec<(f64, f64)>,
    /// (step, validation accuracy in %) per evaluation.
    pub validation_accuracy: Vec<(f64, f64)>,
}

/// Reads a run's curves from its stored step and evaluation events. An event that does
/// not parse is logged and left out.
pub async fn loss_curves(pool: &DbPool, run_id: i64) -> Result<LossCurves, AppError> {
    let stored = EventLog::new(pool.clone())
        .of_kinds(run_id, &[EventKind::Step, EventKind::Eval])
        .await?;
    let mut curves = LossCurves::default();
    for event in stored {
        match serde_json::from_str::<Event>(&event.payload) {
            Ok(Event::Step { step, loss, .. }) => curves.loss.push((step as f64, loss)),
            Ok(Event::Eval {
                step,
                split: EvalSplit::Validation,
                loss,
                accuracy,
            }) => {
                curves.validation_loss.push((step as f64, loss));
                curves
                    .validation_accuracy
                    .push((step as f64, 100.0 * accuracy));
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(
                run = run_id,
                seq = event.seq,
                %error,
                "a stored run event does not parse; its curve point is left out"
            ),
        }
    }
    curves.loss = downsample(&curves.loss, MAX_CURVE_POINTS);
    Ok(curves)
}

/// Keeps at most `max` points: the mean of each of `max` equal slices, so the curve's
/// shape survives and a long run stays cheap to draw.
pub fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max == 0 {
        return points.to_vec();
    }
    (0..max)
        .filter_map(|i| {
            let slice = &points[i * points.len() / max..(i + 1) * points.len() / max];
            (!slice.is_empty()).then(|| {
                let n = slice.len() as f64;
                (
                    slice.iter().map(|p| p.0).sum::<f64>() / n,
                    slice.iter().map(|p| p.1).sum::<f64>() / n,
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::downsample;

    #[test]
    fn downsampling_keeps_short_curves_and_averages_long_ones() {
        let short = vec![(1.0, 2.0), (2.0, 4.0)];
        assert_eq!(downsample(&short, 10), short);
        let long: Vec<(f64, f64)> = (1..=1000).map(|i| (i as f64, 1.0)).collect();
        let kept = downsample(&long, 100);
        assert_eq!(kept.len(), 100);
        assert_eq!(kept[0], (5.5, 1.0));
    }
}
