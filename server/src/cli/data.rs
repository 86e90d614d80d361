//! `jigsaw-lab data status|add`: the instructor Training data page's work from the
//! terminal, on the same SST-2 folder and database ([`app::runs::dataset::ssr::TrainingData`]).

use crate::config::Config;
use app::runs::dataset::DataFacts;
use clap::Subcommand;
use std::path::PathBuf;

/// What `jigsaw-lab data` does.
#[derive(Debug, Clone, Subcommand)]
pub enum DataAction {
    /// Say whether the training data is installed and what it holds
    ///
    /// Checks the folder of the JIGSAW_SST2_DIR setting as the server does: the three
    /// files, their headers, columns and labels, their rows, and whether they are the GLUE
    /// release byte for byte (sha256). Exits with status 1 when runs cannot use it.
    #[command(after_long_help = super::SETTINGS_NOTE)]
    Status,
    /// Install SST-2 from GLUE's SST-2.zip or a folder with its three files
    ///
    /// The files (train.tsv, dev.tsv, test.tsv) are copied, or unpacked from the zip, into
    /// a hidden folder beside the data folder, checked, and only then renamed into place,
    /// replacing what was there. Refused while runs are queued or training on the data
    /// installed now. Nothing changes when it fails.
    #[command(after_long_help = super::SETTINGS_NOTE)]
    Add {
        /// SST-2.zip, another zip with the three files, or a folder with them
        path: PathBuf,
    },
}

impl DataAction {
    /// Runs the action: `Ok(true)` when the data is usable afterwards.
    pub fn run(&self, config: &Config) -> Result<bool, String> {
        let data = config.training_data();
        match self {
            Self::Status => match data.status() {
                Ok(facts) => {
                    println!("{}: {}", data.dir.display(), describe(&facts));
                    Ok(true)
                }
                Err(problem) => {
                    println!(
                        "{}: runs cannot use it: {problem}. Install it with `jigsaw-lab data add SST-2.zip`.",
                        data.dir.display()
                    );
                    Ok(false)
                }
            },
            Self::Add { path } => {
                let usable_now = data.status().is_ok();
                let active = crate::db::with_database(config, |pool| async move {
                    app::runs::queue::RunQueue::new(pool).active_count().await
                })?;
                if usable_now && active > 0 {
                    return Err(format!(
                        "{active} run(s) are queued or training on the data installed now; \
                         replace it when no run is queued or training"
                    ));
                }
                let facts = data.add(path).map_err(|e| e.to_string())?;
                println!(
                    "Installed SST-2 in {}: {}. Teams can queue runs now.",
                    data.dir.display(),
                    describe(&facts)
                );
                Ok(true)
            }
        }
    }
}

/// What the data holds, in one line.
fn describe(facts: &DataFacts) -> String {
    format!(
        "train {} sentences ({:.1}% positive; {} kept for validation), dev {}, test {}; {}",
        facts.train_rows,
        100.0 * facts.train_positive as f64 / facts.train_rows.max(1) as f64,
        facts.validation_size,
        facts.dev_rows,
        facts.test_rows,
        if facts.glue_release {
            "the GLUE release, verified by sha256"
        } else {
            "not the GLUE release (the lessons' numbers are SST-2's)"
        }
    )
}
