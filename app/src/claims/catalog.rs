//! The claims file (`app/content/claims.toml`): each claim, the runs that test it and the
//! rule that decides it, read once and checked.

use super::verdict::Rule;
use run_protocol::RunSettings;
use serde::Deserialize;
use std::sync::OnceLock;

/// The claims file, embedded at build time.
const CLAIMS_FILE: &str = include_str!("../../content/claims.toml");

/// The file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimsFile {
    claims: Vec<Claim>,
}

/// One of the lessons' central claims and the runs that test it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// Stable name, stored with its runs.
    pub slug: String,
    /// The lesson that makes the claim.
    pub lesson: String,
    /// A short name for buttons and headings.
    pub title: String,
    /// The claim as the lesson makes it.
    pub claim: String,
    /// How the runs test it, in words a student follows.
    pub test: String,
    /// What is different when a CPU trains the runs.
    pub cpu_note: String,
    /// How the runs' numbers decide it.
    pub rule: Rule,
    /// The runs, one per arm.
    pub arms: Vec<Arm>,
}

/// One run of a claim's test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    /// Stable name, stored with its run.
    pub name: String,
    /// What it is, for people.
    pub label: String,
    /// Settings on every device.
    #[serde(default)]
    pub settings: SettingsChange,
    /// Settings when a CPU trains it.
    #[serde(default)]
    pub cpu: SettingsChange,
    /// Settings when a GPU trains it.
    #[serde(default)]
    pub gpu: SettingsChange,
}

/// Settings an arm changes from the run form's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    learning_rate: Option<f64>,
    batch_size: Option<usize>,
    epochs: Option<usize>,
    train_subset: Option<usize>,
    lora_rank: Option<usize>,
    lora_alpha: Option<f64>,
}

impl SettingsChange {
    /// Applies the change to `settings`.
    fn apply(&self, settings: &mut RunSettings) {
        if let Some(rate) = self.learning_rate {
            settings.learning_rate = rate;
        }
        if let Some(batch) = self.batch_size {
            settings.batch_size = batch;
        }
        if let Some(epochs) = self.epochs {
            settings.epochs = epochs;
        }
        if let Some(subset) = self.train_subset {
            settings.train_subset = Some(subset);
        }
        if let Some(rank) = self.lora_rank {
            settings.lora_rank = Some(rank);
        }
        if let Some(alpha) = self.lora_alpha {
            settings.lora_alpha = Some(alpha);
        }
    }
}

/// Which kind of device trains a claim's runs, which sizes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A CPU: subsets that finish within a lesson.
    Cpu,
    /// A GPU: all of SST-2.
    Gpu,
}

impl Arm {
    /// The run's settings on `device` for `model`: the form's defaults, then the arm's.
    pub fn settings(&self, device: DeviceKind, model: &str) -> RunSettings {
        let mut settings = RunSettings {
            model: model.to_string(),
            ..RunSettings::default()
        };
        self.settings.apply(&mut settings);
        match device {
            DeviceKind::Cpu => self.cpu.apply(&mut settings),
            DeviceKind::Gpu => self.gpu.apply(&mut settings),
        }
        settings
    }
}

/// Every claim, in the file's order.
pub fn claims() -> &'static [Claim] {
    static CLAIMS: OnceLock<Vec<Claim>> = OnceLock::new();
    CLAIMS.get_or_init(|| {
        parse(CLAIMS_FILE).unwrap_or_else(|e| panic!("app/content/claims.toml: {e}"))
    })
}

/// The claim called `slug`.
pub fn claim(slug: &str) -> Option<&'static Claim> {
    claims().iter().find(|claim| claim.slug == slug)
}

/// Reads and checks a claims file: unique slugs, known lessons, rules that name the arms,
/// and settings within the limits on both devices.
fn parse(text: &str) -> Result<Vec<Claim>, String> {
    let file: ClaimsFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let lessons = crate::lessons::content::catalog();
    for (index, claim) in file.claims.iter().enumerate() {
        if file.claims[..index].iter().any(|c| c.slug == claim.slug) {
            return Err(format!("the claim {} comes twice", claim.slug));
        }
        if !lessons.iter().any(|l| l.summary.slug == claim.lesson) {
            return Err(format!(
                "the claim {} names no lesson: {}",
                claim.slug, claim.lesson
            ));
        }
        for arm in claim.rule.arms() {
            if !claim.arms.iter().any(|a| a.name == arm) {
                return Err(format!(
                    "the claim {}'s rule names no arm of it: {arm}",
                    claim.slug
                ));
            }
        }
        for arm in &claim.arms {
            for device in [DeviceKind::Cpu, DeviceKind::Gpu] {
                arm.settings(device, run_protocol::settings::DEFAULT_MODEL)
                    .check_limits()
                    .map_err(|e| format!("the claim {}, arm {}: {e}", claim.slug, arm.name))?;
            }
        }
    }
    Ok(file.claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use run_protocol::settings::DEFAULT_MODEL;

    #[test]
    fn the_claims_file_reads_and_each_claim_has_a_lesson_and_runs() {
        let claims = claims();
        assert_eq!(claims.len(), 4);
        for claim in claims {
            assert!(!claim.arms.is_empty(), "{}", claim.slug);
        }
    }

    #[test]
    fn the_cpu_runs_read_a_subset_and_the_gpu_runs_all_of_sst2() {
        for claim in claims() {
            for arm in &claim.arms {
                let cpu = arm.settings(DeviceKind::Cpu, DEFAULT_MODEL);
                let gpu = arm.settings(DeviceKind::Gpu, DEFAULT_MODEL);
                assert!(cpu.train_subset.is_some_and(|n| n <= 1_000), "{}", arm.name);
                assert!(
                    gpu.train_subset.is_none() || claim.slug == "small-subset-overfits",
                    "{}",
                    arm.name
                );
            }
        }
    }

    #[test]
    fn the_lora_claim_compares_full_and_lora_on_the_same_sentences() {
        let claim = claim("lora-keeps-accuracy").unwrap();
        let [full, lora] = [&claim.arms[0], &claim.arms[1]]
            .map(|arm| arm.settings(DeviceKind::Gpu, DEFAULT_MODEL));
        assert_eq!(full.lora_rank, None);
        assert_eq!(lora.lora_rank, Some(16));
        assert_eq!(
            (full.epochs, full.batch_size),
            (lora.epochs, lora.batch_size)
        );
        assert_eq!(
            full.learning_rate,
            run_protocol::settings::DEFAULT_LEARNING_RATE_FULL
        );
        assert_eq!(
            lora.learning_rate,
            run_protocol::settings::DEFAULT_LEARNING_RATE_LORA
        );
    }

    #[test]
    fn each_cpu_run_takes_minutes_at_a_2_core_machines_speed() {
        use run_protocol::estimate::{CPU_EXAMPLES_PER_SECOND, Workload};
        let mut total = 0.0;
        for claim in claims() {
            for arm in &claim.arms {
                let settings = arm.settings(DeviceKind::Cpu, DEFAULT_MODEL);
                let seconds = Workload::of(
                    settings.train_subset.unwrap(),
                    settings.batch_size,
                    settings.epochs,
                    2_000,
                )
                .unwrap()
                .seconds(CPU_EXAMPLES_PER_SECOND);
                assert!(seconds < 600.0, "{} {}: {seconds} s", claim.slug, arm.name);
                total += seconds;
            }
        }
        // The README's "about 20 minutes for all four".
        assert!((1_000.0..1_500.0).contains(&total), "{total} s in all");
    }

    #[test]
    fn a_bad_claims_file_is_refused_with_a_reason() {
        let file = |rule: &str, lesson: &str, rate: &str| {
            format!(
                "[[claims]]\nslug = \"x\"\nlesson = \"{lesson}\"\ntitle = \"t\"\nclaim = \"c\"\n\
                 test = \"t\"\ncpu_note = \"n\"\nrule = {rule}\n\
                 [[claims.arms]]\nname = \"a\"\nlabel = \"A\"\nsettings = {{ learning_rate = {rate} }}\n"
            )
        };
        let rule = "{ kind = \"fails-to-learn\", arm = \"a\", below = 0.6 }";
        assert!(parse(&file(rule, "lora", "1e-2")).is_ok());
        assert!(
            parse(&file(rule, "nope", "1e-2"))
                .unwrap_err()
                .contains("no lesson")
        );
        assert!(
            parse(&file(rule, "lora", "5.0"))
                .unwrap_err()
                .contains("arm a")
        );
        let other = "{ kind = \"fails-to-learn\", arm = \"b\", below = 0.6 }";
        assert!(
            parse(&file(other, "lora", "1e-2"))
                .unwrap_err()
                .contains("no arm")
        );
    }
}
