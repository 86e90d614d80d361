//! How long runs take on the class machine: the estimate the form shows and stores with
//! each run, the speed measured from finished runs (which later estimates use), the wait
//! in the queue, and how far the estimates were off (for the instructor).

use run_protocol::RunSettings;
use run_protocol::estimate::{DEV_SENTENCES, Workload, speed_of_model};
use serde::{Deserialize, Serialize};

/// What an estimate needs to know about the machine and the data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Training sentences per second of the default model: measured from this machine's
    /// finished runs when it has some, else the device's typical speed.
    pub reference_speed: f64,
    /// Whether `reference_speed` was measured here.
    pub measured: bool,
    /// SST-2 training sentences after the validation split.
    pub train_examples: usize,
    /// Sentences in the validation split.
    pub validation: usize,
    /// The class's time limit per run, in seconds.
    pub limit_seconds: f64,
}

impl Machine {
    /// The seconds a run of `settings` on `model` takes: its whole workload, or the time
    /// limit plus the final SST-2 dev evaluation when it would stop there. `None` for
    /// settings that plan no steps.
    pub fn estimate(&self, settings: &RunSettings, model: &super::ModelChoice) -> Option<f64> {
        let examples = settings.train_subset.map_or(self.train_examples, |subset| {
            subset.min(self.train_examples)
        });
        let work = Workload::of(
            examples,
            settings.batch_size,
            settings.epochs,
            self.validation,
        )?;
        let speed = speed_of_model(self.reference_speed, model.params, model.family);
        let final_evaluation = (self.validation + DEV_SENTENCES) as f64
            / run_protocol::estimate::EVALUATION_SPEEDUP
            / speed;
        Some(
            work.seconds(speed)
                .min(self.limit_seconds + final_evaluation),
        )
    }
}

/// One finished run's estimate against what it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimateCheck {
    /// The run.
    pub run_id: i64,
    /// Its team.
    pub team: String,
    /// Seconds estimated when it was queued.
    pub estimated_seconds: f64,
    /// Seconds it trained, start to finish.
    pub trained_seconds: f64,
}

impl EstimateCheck {
    /// How far off the estimate was, as a share of what the run took (+0.1: 10% too long).
    pub fn error(&self) -> f64 {
        (self.estimated_seconds - self.trained_seconds) / self.trained_seconds.max(1.0)
    }
}

/// "1 h 05 min", "12 min", "40 s".
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=89 => format!("{s} s"),
        90..=3599 => format!("{} min", (s + 30) / 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// The mean of the estimates' absolute errors, as a share, when there are any.
pub fn mean_absolute_error(checks: &[EstimateCheck]) -> Option<f64> {
    (!checks.is_empty())
        .then(|| checks.iter().map(|c| c.error().abs()).sum::<f64>() / checks.len() as f64)
}

#[cfg(feature = "ssr")]
pub use ssr::*;

#[cfg(feature = "ssr")]
mod ssr {
    //! The speeds and estimates in the database.

    use super::EstimateCheck;
    use crate::db::DbPool;
    use crate::runs::QueueHold;

    /// How many of the latest measured runs the machine's speed is the median of.
    const MEASURED_RUNS: i64 = 5;

    /// How long a training node counts as running after it last renewed its row.
    pub const NODE_SEEN_WITHIN_SECS: i64 = 90;
    /// How often a training node renews its row.
    pub const NODE_RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

    /// The Unix time now, in seconds.
    pub fn unix_now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }

    /// Declares, or renews, training node `name` as `node` says it is now.
    pub async fn declare_node(
        pool: &DbPool,
        name: &str,
        node: &TrainingNode,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO training_nodes \
             (name, device, slots, last_seen, train_examples, warming_up_since) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO UPDATE SET device = excluded.device, slots = excluded.slots, \
             last_seen = excluded.last_seen, train_examples = excluded.train_examples, \
             warming_up_since = excluded.warming_up_since",
        )
        .bind(name)
        .bind(&node.device)
        .bind(node.slots)
        .bind(unix_now())
        .bind(node.train_examples)
        .bind(node.warming_up_since)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Removes training node `name` (it is stopping).
    pub async fn forget_node(pool: &DbPool, name: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM training_nodes WHERE name = $1")
            .bind(name)
            .execute(pool)
            .await?;
        Ok(())
    }

    /// A training node, as it declares itself.
    #[derive(Debug, Clone, PartialEq)]
    pub struct TrainingNode {
        /// Its compute device, described.
        pub device: String,
        /// Runs it trains at once.
        pub slots: i64,
        /// SST-2 training sentences it has; `None` when it has no usable training data.
        pub train_examples: Option<i64>,
        /// Since when (Unix seconds) it has been compiling its GPU kernels after its start,
        /// claiming no run meanwhile; `None` once it claims runs.
        pub warming_up_since: Option<i64>,
    }

    crate::db::from_row!(TrainingNode {
        device,
        slots,
        train_examples,
        warming_up_since
    });

    /// The training nodes seen lately, one entry per node.
    pub async fn live_nodes(pool: &DbPool) -> Result<Vec<TrainingNode>, sqlx::Error> {
        sqlx::query_as(
            "SELECT device, slots, train_examples, warming_up_since FROM training_nodes \
             WHERE last_seen >= $1 ORDER BY name",
        )
        .bind(unix_now() - NODE_SEEN_WITHIN_SECS)
        .fetch_all(pool)
        .await
    }

    /// What holds every queued run with these live training `nodes`: none running, or
    /// every one still warming up. `None` while one of them claims runs.
    pub fn queue_hold(nodes: &[TrainingNode]) -> Option<QueueHold> {
        queue_hold_at(nodes, unix_now())
    }

    /// [`queue_hold`] at Unix time `now`.
    pub(crate) fn queue_hold_at(nodes: &[TrainingNode], now: i64) -> Option<QueueHold> {
        if nodes.is_empty() {
            return Some(QueueHold::NoTrainingNode);
        }
        nodes
            .iter()
            .map(|node| node.warming_up_since)
            .collect::<Option<Vec<i64>>>()
            .and_then(|since| since.into_iter().min())
            .map(|since| QueueHold::WarmingUp {
                seconds: (now - since).max(0),
            })
    }

    /// The default model's training speed measured by the latest finished runs on
    /// `device`: the median of up to five, or `None` before any run was measured.
    pub async fn measured_speed(pool: &DbPool, device: &str) -> Result<Option<f64>, sqlx::Error> {
        let mut speeds: Vec<f64> = sqlx::query_scalar(
            "SELECT reference_speed FROM runs WHERE device = $1 AND reference_speed IS NOT NULL \
             ORDER BY finished_at DESC, id DESC LIMIT $2",
        )
        .bind(device)
        .bind(MEASURED_RUNS)
        .fetch_all(pool)
        .await?;
        speeds.retain(|s| s.is_finite() && *s > 0.0);
        speeds.sort_by(f64::total_cmp);
        Ok(match speeds.len() {
            0 => None,
            n if n % 2 == 1 => Some(speeds[n / 2]),
            n => Some((speeds[n / 2 - 1] + speeds[n / 2]) / 2.0),
        })
    }

    /// Seconds of training still ahead of a run queued now: the estimates of the runs
    /// waiting, and what is left of those training, shared over `slots` training slots.
    pub async fn queue_ahead(pool: &DbPool, slots: usize) -> Result<(i64, f64), sqlx::Error> {
        let rows: Vec<(String, Option<f64>, Option<String>)> = sqlx::query_as(
            "SELECT status, estimated_seconds, started_at FROM runs WHERE status IN ('queued', 'running')",
        )
        .fetch_all(pool)
        .await?;
        let now = crate::db::now();
        let mut seconds = 0.0;
        for (status, estimate, started_at) in &rows {
            let estimate = estimate.unwrap_or(0.0);
            seconds += match (status.as_str(), started_at) {
                ("running", Some(started)) => (estimate - elapsed_seconds(started, &now)).max(0.0),
                _ => estimate,
            };
        }
        Ok((rows.len() as i64, seconds / slots.max(1) as f64))
    }

    /// Seconds between two database timestamps (`YYYY-MM-DD HH:MM:SS`, UTC).
    fn elapsed_seconds(from: &str, to: &str) -> f64 {
        let seconds = |stamp: &str| -> Option<i64> {
            let (date, time) = stamp.split_once(' ')?;
            let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
            let (y, m, day) = (d.next()??, d.next()??, d.next()??);
            let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
            let (h, min, s) = (t.next()??, t.next()??, t.next()??);
            // Days from civil (Howard Hinnant), the inverse of `crate::db::timestamp`.
            let y = if m <= 2 { y - 1 } else { y };
            let era = y.div_euclid(400);
            let yoe = y - era * 400;
            let mp = (m + 9) % 12;
            let doy = (153 * mp + 2) / 5 + day - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            let days = era * 146_097 + doe - 719_468;
            Some(days * 86_400 + h * 3_600 + min * 60 + s)
        };
        match (seconds(from), seconds(to)) {
            (Some(a), Some(b)) => (b - a) as f64,
            _ => 0.0,
        }
    }

    /// The latest finished runs of a class with an estimate and a measured time, newest
    /// first.
    pub async fn estimate_checks(
        pool: &DbPool,
        class_id: i64,
        limit: i64,
    ) -> Result<Vec<EstimateCheck>, sqlx::Error> {
        let rows: Vec<(i64, String, f64, f64)> = sqlx::query_as(
            "SELECT runs.id, teams.name, runs.estimated_seconds, runs.trained_seconds \
             FROM runs JOIN teams ON teams.id = runs.team_id \
             WHERE runs.class_id = $1 AND runs.estimated_seconds IS NOT NULL \
             AND runs.trained_seconds IS NOT NULL \
             ORDER BY runs.finished_at DESC, runs.id DESC LIMIT $2",
        )
        .bind(class_id)
        .bind(limit)
        .fetch_all(pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(run_id, team, estimated_seconds, trained_seconds)| EstimateCheck {
                    run_id,
                    team,
                    estimated_seconds,
                    trained_seconds,
                },
            )
            .collect())
    }

    #[cfg(test)]
    mod tests {
        use super::{QueueHold, TrainingNode, elapsed_seconds, queue_hold_at};

        fn node(warming_up_since: Option<i64>) -> TrainingNode {
            TrainingNode {
                device: "GPU".into(),
                slots: 1,
                train_examples: Some(65_349),
                warming_up_since,
            }
        }

        #[test]
        fn the_queue_is_held_only_while_no_node_claims_runs() {
            assert_eq!(queue_hold_at(&[], 1_000), Some(QueueHold::NoTrainingNode));
            assert_eq!(queue_hold_at(&[node(None)], 1_000), None);
            // The node warming up longest is the one likely to claim first.
            assert_eq!(
                queue_hold_at(&[node(Some(940)), node(Some(900))], 1_000),
                Some(QueueHold::WarmingUp { seconds: 100 })
            );
            // One node that claims runs is enough.
            assert_eq!(queue_hold_at(&[node(Some(900)), node(None)], 1_000), None);
            // A node whose clock runs ahead never makes a negative wait.
            assert_eq!(
                queue_hold_at(&[node(Some(1_010))], 1_000),
                Some(QueueHold::WarmingUp { seconds: 0 })
            );
        }

        #[test]
        fn timestamps_subtract_across_days_and_years() {
            assert_eq!(
                elapsed_seconds("2026-12-05 10:00:00", "2026-12-05 10:01:30"),
                90.0
            );
            assert_eq!(
                elapsed_seconds("2026-12-31 23:59:59", "2027-01-01 00:00:01"),
                2.0
            );
            assert_eq!(
                elapsed_seconds("2024-02-28 12:00:00", "2024-03-01 12:00:00"),
                172_800.0
            );
            assert_eq!(elapsed_seconds("garbage", "2024-03-01 12:00:00"), 0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            reference_speed: 16.0,
            measured: false,
            train_examples: 65_349,
            validation: 2_000,
            limit_seconds: 3_600.0,
        }
    }

    fn minilm(params: usize) -> super::super::ModelChoice {
        super::super::ModelChoice {
            name: "all-MiniLM-L6-v2".into(),
            params,
            family: run_protocol::Family::Bert,
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(40.0), "40 s");
        assert_eq!(duration(720.0), "12 min");
        assert_eq!(duration(3_900.0), "1 h 05 min");
    }

    #[test]
    fn an_estimate_stops_at_the_time_limit() {
        let all = RunSettings::default();
        let estimate = machine().estimate(&all, &minilm(22_713_986)).unwrap();
        assert!(
            estimate < 3_600.0 + 200.0 && estimate > 3_600.0,
            "{estimate}"
        );
        let small = RunSettings {
            train_subset: Some(1_000),
            epochs: 1,
            batch_size: 16,
            ..all
        };
        let quick = machine().estimate(&small, &minilm(22_713_986)).unwrap();
        assert!(quick < 200.0, "{quick}");
        assert_eq!(
            machine().estimate(&RunSettings { epochs: 0, ..small }, &minilm(1)),
            None
        );
    }

    #[test]
    fn errors_are_shares_of_the_actual_time() {
        let check = |estimated_seconds, trained_seconds| EstimateCheck {
            run_id: 1,
            team: "Red".into(),
            estimated_seconds,
            trained_seconds,
        };
        assert!((check(110.0, 100.0).error() - 0.1).abs() < 1e-12);
        assert!((check(90.0, 100.0).error() + 0.1).abs() < 1e-12);
        let mean = mean_absolute_error(&[check(110.0, 100.0), check(70.0, 100.0)]).unwrap();
        assert!((mean - 0.2).abs() < 1e-12);
        assert_eq!(mean_absolute_error(&[]), None);
    }
}
