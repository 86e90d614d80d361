//! `jigsaw-lab models list|add|remove`: the instructor Models page's work from the
//! terminal, on the same models folder and database ([`app::library::ssr::Library`]).

use crate::config::Config;
use app::library::ModelEntry;
use clap::Subcommand;
use std::path::{Path, PathBuf};

/// What `jigsaw-lab models` does.
#[derive(Debug, Clone, Subcommand)]
pub enum ModelsAction {
    /// List the models teams can fine-tune
    ///
    /// One line per folder of the JIGSAW_MODELS_DIR setting: name, family, parameters,
    /// vocabulary, longest input, size on disk, and what this server's runs measured with
    /// it (best validation accuracy, training sentences per second per device). A folder
    /// the engine cannot use says why.
    #[command(after_long_help = super::SETTINGS_NOTE)]
    List,
    /// Add a model from an HF folder or a zip of one
    ///
    /// The folder (config.json, model.safetensors or pytorch_model.bin, tokenizer.json) is
    /// copied, or the zip unpacked, into a hidden folder; the engine loads it and
    /// classifies two sentences with it on the CPU; only then does it appear under its
    /// name. Nothing is left behind when it fails.
    #[command(after_long_help = super::SETTINGS_NOTE)]
    Add {
        /// The HF model folder, or a .zip of one
        path: PathBuf,
        /// The name teams see (default: the folder's or zip's name)
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a model that no queued or running run uses
    ///
    /// The default model cannot be removed: the lesson widgets run it.
    #[command(after_long_help = super::SETTINGS_NOTE)]
    Remove {
        /// The model's name, as `jigsaw-lab models list` shows it
        name: String,
    },
}

impl ModelsAction {
    /// Runs the action: `Ok(true)` when it did what was asked.
    pub fn run(&self, config: &Config) -> Result<bool, String> {
        let library = config.library();
        match self {
            Self::List => {
                let entries = crate::db::with_database(config, |pool| {
                    let library = library.clone();
                    async move { library.entries(&pool).await }
                })?;
                if entries.is_empty() {
                    println!("The models folder {} is empty.", library.dir.display());
                }
                for entry in entries {
                    println!("{}", describe(&entry));
                }
                Ok(true)
            }
            Self::Add { path, name } => {
                let name = match name {
                    Some(name) => name.clone(),
                    None => default_name(path)?,
                };
                let facts = library.add(path, &name).map_err(|e| e.to_string())?;
                println!(
                    "Added {name}: {}, {} parameters, {:.1} MB. Teams can choose it now.",
                    facts.family.name(),
                    facts.params,
                    facts.disk_bytes as f64 / 1e6
                );
                Ok(true)
            }
            Self::Remove { name } => {
                crate::db::with_database(config, |pool| {
                    let library = library.clone();
                    let name = name.clone();
                    async move { library.remove(&pool, &name).await }
                })?;
                println!("Removed {name}.");
                Ok(true)
            }
        }
    }
}

/// The name of a folder, or of a zip without its extension.
fn default_name(path: &Path) -> Result<String, String> {
    let stem = if path.is_dir() {
        path.file_name()
    } else {
        path.file_stem()
    };
    stem.and_then(|s| s.to_str())
        .map(str::to_string)
        .ok_or_else(|| format!("{} has no name to use; pass --name", path.display()))
}

/// One model as a line of `models list`.
fn describe(entry: &ModelEntry) -> String {
    let mut line = entry.name.clone();
    match &entry.summary {
        Ok(facts) => line.push_str(&format!(
            "  {}  {:.1}M parameters  vocabulary {}  up to {} tokens  {:.1} MB",
            facts.family.name(),
            facts.params as f64 / 1e6,
            facts.vocab_size,
            facts.max_len,
            facts.disk_bytes as f64 / 1e6
        )),
        Err(problem) => line.push_str(&format!("  cannot be used: {problem}")),
    }
    if entry.is_default {
        line.push_str("  (default)");
    }
    let measured = &entry.measured;
    if let Some(best) = measured.best_validation {
        line.push_str(&format!(
            "  best validation {:.2}% over {} runs",
            best * 100.0,
            measured.finished_runs
        ));
    }
    for (device, speed) in &measured.speeds {
        line.push_str(&format!("  {speed:.0} sentences/s on {device}"));
    }
    if entry.active_runs > 0 {
        line.push_str(&format!("  {} active runs", entry.active_runs));
    }
    line
}
