//! The training data: SST-2 as GLUE distributes it (train.tsv, dev.tsv, test.tsv) in the
//! folder the server is configured with. It is never part of the repository, so a new
//! machine starts without it: the instructor's pages say so and how to add it, the run
//! form refuses to queue until it is there, and the instructor adds it by uploading GLUE's
//! SST-2.zip or the three files (or with `jigsaw-lab data add`). An upload is checked
//! (headers, columns, labels, row counts, and the GLUE release's sha256 when it has that
//! release's row counts) in a hidden folder and only then renamed into place.

use crate::error::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Where the Training data page's upload form posts (multipart: `archive`, a zip, or
/// `files`, the three TSVs); the server answers with a redirect back to the page, which
/// says what happened.
pub const UPLOAD_PATH: &str = "/instructor/data";

/// The page name the upload's outcome is kept under ([`crate::flash`]).
pub const FLASH_PAGE: &str = "data";

/// The largest upload (GLUE's SST-2.zip is about 7 MB, the three TSVs about 4 MB).
pub const MAX_UPLOAD_MB: u64 = 64;

/// What an installed SST-2 folder holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFacts {
    /// Labelled sentences in train.tsv, before the validation split.
    pub train_rows: usize,
    /// Of those, the positive ones.
    pub train_positive: usize,
    /// Labelled sentences in dev.tsv (the private test set).
    pub dev_rows: usize,
    /// Unlabelled sentences in test.tsv.
    pub test_rows: usize,
    /// Whether the files are GLUE's release byte for byte (sha256).
    pub glue_release: bool,
    /// Sentences the runs carve out of train for validation.
    pub validation_size: usize,
}

/// What the Training data page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataPage {
    /// The installed data, or why there is none the engine can use.
    pub status: Result<DataFacts, String>,
    /// The folder on the server (the instructor may see it; students never do).
    pub folder: String,
    /// Runs waiting or training; the data cannot be replaced while there are any.
    pub active_runs: i64,
    /// Whether this server trains runs itself (a web-only node's data is for nothing).
    pub trains_here: bool,
    /// What the upload just posted did, told once.
    pub outcome: Option<crate::flash::Outcome>,
}

/// The Training data page, for the instructor.
#[server(prefix = "/api", endpoint = "training-data")]
pub async fn training_data_page() -> Result<DataPage, AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_instructor(&pool).await?;
    let data: ssr::TrainingData = AppError::from_context("training data")?;
    let active_runs = crate::runs::queue::RunQueue::new(pool.clone())
        .active_count()
        .await?;
    Ok(DataPage {
        status: data.checked().await,
        folder: data.dir.display().to_string(),
        active_runs,
        trains_here: data.trains_here,
        outcome: crate::flash::ssr::take(FLASH_PAGE).await?,
    })
}

/// Whether training can start: `None` when it can, else why not, in words for the
/// instructor's pages (the notice that links to the Training data page).
#[server(prefix = "/api", endpoint = "training-data-missing")]
pub async fn training_data_missing() -> Result<Option<String>, AppError> {
    let pool = crate::db::pool()?;
    crate::auth::ssr::require_instructor(&pool).await?;
    let data: ssr::TrainingData = AppError::from_context("training data")?;
    Ok(ssr::missing_for_training(&pool, &data).await?)
}

#[cfg(feature = "ssr")]
pub mod ssr {
    //! The SST-2 folder on disk: checking it (cached until its files change) and
    //! installing a new copy from a zip or a folder.

    use super::DataFacts;
    use crate::db::DbPool;
    use crate::error::AppError;
    use crate::uploads::{Staging, copy_entry, open_zip};
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;
    use trainer::data::SST2_FILES;

    /// The most entries a data zip may hold (GLUE's SST-2.zip has about 15).
    const MAX_ZIP_ENTRIES: usize = 1000;

    /// The most bytes the three files may take unpacked.
    const MAX_UNPACKED_BYTES: u64 = 4 * (super::MAX_UPLOAD_MB << 20);

    /// What students see when runs cannot start for lack of data.
    pub const MISSING_FOR_STUDENTS: &str = "Training data (SST-2) is not installed on the \
        class server yet, so runs cannot start. Ask your instructor: they add it on the \
        Training data page.";

    /// The size and modification time of each file, to notice a change.
    type Stamp = Vec<Option<(u64, SystemTime)>>;

    /// The last check and the files it saw.
    type LastCheck = Option<(Stamp, Result<DataFacts, String>)>;

    /// The configured SST-2 folder.
    #[derive(Debug, Clone)]
    pub struct TrainingData {
        /// The folder with train.tsv, dev.tsv and test.tsv.
        pub dir: PathBuf,
        /// Sentences the runs carve out of train for validation.
        pub validation_size: usize,
        /// Whether this node trains runs (it has training slots).
        pub trains_here: bool,
        /// The last check and the files it saw.
        checked: Arc<Mutex<LastCheck>>,
    }

    impl TrainingData {
        /// The SST-2 folder `dir`, for runs that keep `validation_size` sentences aside.
        pub fn new(dir: PathBuf, validation_size: usize, trains_here: bool) -> Self {
            Self {
                dir,
                validation_size,
                trains_here,
                checked: Arc::default(),
            }
        }

        /// The folder's data, checked, or why it cannot be used. Blocking: the files are
        /// read again only when one of them changed since the last check.
        pub fn status(&self) -> Result<DataFacts, String> {
            let stamp = stamp(&self.dir);
            let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((seen, result)) = checked.as_ref()
                && *seen == stamp
            {
                return result.clone();
            }
            let result = check(&self.dir, self.validation_size);
            *checked = Some((stamp, result.clone()));
            result
        }

        /// [`Self::status`] on a blocking thread.
        pub async fn checked(&self) -> Result<DataFacts, String> {
            let data = self.clone();
            tokio::task::spawn_blocking(move || data.status())
                .await
                .unwrap_or_else(|e| Err(format!("the check stopped: {e}")))
        }

        /// Training sentences a run has after the validation split, when the data is there.
        pub async fn train_examples(&self) -> Option<usize> {
            self.checked()
                .await
                .ok()
                .map(|facts| facts.train_rows.saturating_sub(self.validation_size))
        }

        /// Installs the SST-2 in `source` (GLUE's SST-2.zip, another zip with the three
        /// files, or a folder with them): copied into a hidden folder beside the data
        /// folder, checked, then renamed into place, replacing what was there. Blocking;
        /// nothing changes when it fails. One install at a time, across processes (a lock
        /// file beside the data folder). The caller makes sure no run is active.
        pub fn add(&self, source: &Path) -> Result<DataFacts, AppError> {
            if !source.exists() {
                return Err(AppError::bad_request(format!(
                    "{} does not exist.",
                    source.display()
                )));
            }
            let parent = self.parent()?;
            std::fs::create_dir_all(&parent).map_err(|e| self.unwritable(&parent, e))?;
            let _one_at_a_time = self.lock(&parent)?.ok_or_else(|| {
                AppError::busy(
                    "Another install of the training data is in progress; try again in a minute.",
                    std::time::Duration::from_secs(60),
                )
            })?;
            let staging = Staging::new(&parent, "sst2-adding", "").map_err(|_| {
                self.unwritable(
                    &parent,
                    std::io::Error::other("cannot create a folder to unpack into"),
                )
            })?;
            if source.is_dir() {
                copy_files(source, staging.path())?;
            } else {
                unpack_zip(source, staging.path())?;
            }
            let facts = check(staging.path(), self.validation_size).map_err(|problem| {
                AppError::bad_request(format!("This is not SST-2 the runs can use: {problem}."))
            })?;
            self.install(staging, &parent)?;
            Ok(facts)
        }

        /// Renames the checked `staging` folder into place; the folder it replaces is
        /// moved aside first and put back if the rename fails.
        fn install(&self, staging: Staging, parent: &Path) -> Result<(), AppError> {
            let replaced = self
                .dir
                .exists()
                .then(|| Staging::path_for(parent, "sst2-replaced", ""));
            if let Some(aside) = &replaced {
                std::fs::rename(&self.dir, aside).map_err(|e| self.unwritable(parent, e))?;
            }
            if let Err(error) = std::fs::rename(staging.path(), &self.dir) {
                if let Some(aside) = &replaced
                    && let Err(back) = std::fs::rename(aside, &self.dir)
                {
                    tracing::error!(
                        "the data folder {} could not be put back from {}: {back}",
                        self.dir.display(),
                        aside.display()
                    );
                    return Err(AppError::internal(format!(
                        "the old data is in {}, which could not be renamed back to {}: {back}",
                        aside.display(),
                        self.dir.display()
                    )));
                }
                return Err(self.unwritable(parent, error));
            }
            staging.keep();
            if let Some(aside) = replaced
                && let Err(error) = std::fs::remove_dir_all(&aside)
            {
                tracing::warn!(
                    "cannot remove the replaced data {}: {error}",
                    aside.display()
                );
            }
            let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            *checked = None;
            Ok(())
        }

        /// Tidies what an install left beside the data folder when a process stopped in
        /// the middle of it. Run once at start-up. When the data folder is missing but the
        /// copy it was replacing is there (stopped between the two renames), that copy is
        /// put back; the other leftovers are deleted. Nothing is touched while another
        /// process installs, and upload folders younger than an hour may still be filling.
        pub fn sweep(&self) {
            let Ok(parent) = self.parent() else { return };
            let Ok(entries) = std::fs::read_dir(&parent) else {
                return;
            };
            let Ok(Some(_installing_here)) = self.lock(&parent) else {
                return;
            };
            let mut leftovers: Vec<(String, PathBuf, std::time::SystemTime)> = entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let modified = entry.metadata().and_then(|m| m.modified()).ok()?;
                    [".sst2-adding-", ".sst2-replaced-", ".sst2-upload-"]
                        .iter()
                        .any(|prefix| name.starts_with(prefix))
                        .then(|| (name, entry.path(), modified))
                })
                .collect();
            if !self.dir.exists() {
                leftovers.sort_by_key(|(_, _, modified)| std::cmp::Reverse(*modified));
                if let Some(index) = leftovers
                    .iter()
                    .position(|(name, ..)| name.starts_with(".sst2-replaced-"))
                {
                    let (name, path, _) = leftovers.remove(index);
                    match std::fs::rename(&path, &self.dir) {
                        Ok(()) => tracing::warn!(
                            "put the training data back from {name}: an install stopped halfway"
                        ),
                        Err(error) => tracing::error!("cannot put {name} back: {error}"),
                    }
                }
            }
            let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
            for (name, path, modified) in leftovers {
                if name.starts_with(".sst2-upload-") && modified > hour_ago {
                    continue;
                }
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => tracing::info!("removed {name}, left by an interrupted data upload"),
                    Err(error) => tracing::warn!("cannot remove {name}: {error}"),
                }
            }
        }

        /// Takes the install lock beside the data folder: `None` while another process (or
        /// another install in this one) holds it. Released when the file is dropped.
        fn lock(&self, parent: &Path) -> Result<Option<std::fs::File>, AppError> {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(parent.join(".sst2.lock"))
                .map_err(|e| self.unwritable(parent, e))?;
            match file.try_lock() {
                Ok(()) => Ok(Some(file)),
                Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                Err(std::fs::TryLockError::Error(error)) => Err(AppError::internal(error)),
            }
        }

        /// The folder that holds the data folder, where installs stage their files.
        pub fn parent(&self) -> Result<PathBuf, AppError> {
            let absolute = std::path::absolute(&self.dir).map_err(AppError::internal)?;
            absolute.parent().map(Path::to_path_buf).ok_or_else(|| {
                AppError::bad_request(format!(
                    "The data folder {} has no parent folder to stage an upload in; set \
                     JIGSAW_SST2_DIR to a folder such as data/sst2.",
                    self.dir.display()
                ))
            })
        }

        fn unwritable(&self, parent: &Path, error: std::io::Error) -> AppError {
            AppError::bad_request(format!(
                "The server cannot write the data folder {} ({error}); make {} writable for \
                 it, or set JIGSAW_SST2_DIR to a folder it can write.",
                self.dir.display(),
                parent.display()
            ))
        }
    }

    /// The training sentences (after the validation split) runs will have: this node's
    /// data when it trains, else what a training node reports; `None` when no node that
    /// trains has usable data.
    pub async fn train_examples_for_runs(
        pool: &DbPool,
        data: &TrainingData,
    ) -> Result<Option<usize>, sqlx::Error> {
        Ok(data_for_runs(pool, data).await?.0)
    }

    /// Why runs cannot start for lack of data, in words for the instructor, or `None`
    /// when they can. A web-only node with no training node running says nothing: runs
    /// wait for a node, which reports its own data when it starts.
    pub async fn missing_for_training(
        pool: &DbPool,
        data: &TrainingData,
    ) -> Result<Option<String>, sqlx::Error> {
        let (examples, nodes_running) = data_for_runs(pool, data).await?;
        if examples.is_some() {
            return Ok(None);
        }
        if data.trains_here {
            return Ok(Some(data.checked().await.err().unwrap_or_default()));
        }
        Ok(nodes_running.then(|| "no training node has SST-2 installed".to_string()))
    }

    /// The training sentences runs will have (as [`train_examples_for_runs`]), and whether
    /// any training node is running, from one read of the training nodes at most.
    async fn data_for_runs(
        pool: &DbPool,
        data: &TrainingData,
    ) -> Result<(Option<usize>, bool), sqlx::Error> {
        if data.trains_here
            && let Some(examples) = data.train_examples().await
        {
            return Ok((Some(examples), true));
        }
        let nodes = crate::runs::timing::live_nodes(pool).await?;
        let examples = nodes
            .iter()
            .filter_map(|node| node.train_examples)
            .filter_map(|n| usize::try_from(n).ok())
            .max();
        Ok((examples, !nodes.is_empty()))
    }

    fn check(dir: &Path, validation_size: usize) -> Result<DataFacts, String> {
        trainer::data::check_sst2(dir, validation_size)
            .map(|summary| DataFacts {
                train_rows: summary.train_rows,
                train_positive: summary.train_positive,
                dev_rows: summary.dev_rows,
                test_rows: summary.test_rows,
                glue_release: summary.glue_release,
                validation_size,
            })
            .map_err(|error| {
                error
                    .to_string()
                    .replace(&format!("{}/", dir.display()), "")
            })
    }

    fn stamp(dir: &Path) -> Stamp {
        SST2_FILES
            .iter()
            .map(|name| {
                let metadata = std::fs::metadata(dir.join(name)).ok()?;
                Some((metadata.len(), metadata.modified().ok()?))
            })
            .collect()
    }

    /// Copies the three files from the folder `source` into `into`, at most
    /// [`MAX_UNPACKED_BYTES`] in all.
    fn copy_files(source: &Path, into: &Path) -> Result<(), AppError> {
        let mut total = 0u64;
        for name in SST2_FILES {
            let from = source.join(name);
            if !from.is_file() {
                return Err(AppError::bad_request(format!(
                    "{} has no {name}: SST-2 is train.tsv, dev.tsv and test.tsv.",
                    source.display()
                )));
            }
            total += std::fs::metadata(&from).map_or(0, |m| m.len());
            if total > MAX_UNPACKED_BYTES {
                return Err(AppError::bad_request(format!(
                    "The three files hold more than {} MB.",
                    MAX_UNPACKED_BYTES >> 20
                )));
            }
            std::fs::copy(&from, into.join(name)).map_err(|e| {
                AppError::bad_request(format!("{} cannot be read: {e}", from.display()))
            })?;
        }
        Ok(())
    }

    /// Unpacks train.tsv, dev.tsv and test.tsv from the zip at `zip_path` into `into`: the
    /// shallowest entry of each name (GLUE's zip holds them in `SST-2/`), nothing else.
    /// Refuses links, an ambiguous zip and more than [`MAX_UNPACKED_BYTES`], whatever the
    /// headers claim.
    fn unpack_zip(zip_path: &Path, into: &Path) -> Result<(), AppError> {
        let bad = |what: String| AppError::bad_request(format!("The zip {what}."));
        let mut archive = open_zip(zip_path, MAX_ZIP_ENTRIES, |entries| {
            format!("holds {entries} files; SST-2.zip has about 15")
        })?;
        // Every entry named like one of the files, as (index, depth, name in the zip).
        let mut candidates: Vec<Vec<(usize, usize, String)>> = vec![Vec::new(); SST2_FILES.len()];
        for index in 0..archive.len() {
            let entry = archive
                .by_index_raw(index)
                .map_err(|e| bad(format!("is damaged ({e})")))?;
            let shown = String::from_utf8_lossy(entry.name_raw()).into_owned();
            let Some(path) = entry.enclosed_name() else {
                continue;
            };
            let Some(slot) = path
                .file_name()
                .and_then(|name| SST2_FILES.iter().position(|f| *f == name))
            else {
                continue;
            };
            if entry.is_dir() {
                continue;
            }
            if entry.is_symlink() {
                return Err(bad(format!("holds a link, {shown}, which is not allowed")));
            }
            candidates[slot].push((index, path.components().count(), shown));
        }
        // The shallowest copy of each file; two at that depth make the zip ambiguous.
        let mut chosen: Vec<Option<(usize, usize, String)>> = Vec::with_capacity(SST2_FILES.len());
        for (name, mut found) in SST2_FILES.iter().zip(candidates) {
            found.sort_by_key(|(_, depth, _)| *depth);
            if let [(_, first_depth, first), (_, second_depth, second), ..] = found.as_slice()
                && first_depth == second_depth
            {
                return Err(bad(format!(
                    "holds two copies of {name} ({first} and {second}); zip one SST-2 folder"
                )));
            }
            chosen.push(found.into_iter().next());
        }
        let missing: Vec<&str> = SST2_FILES
            .iter()
            .zip(&chosen)
            .filter(|(_, found)| found.is_none())
            .map(|(name, _)| *name)
            .collect();
        if !missing.is_empty() {
            return Err(bad(format!(
                "has no {}: use GLUE's SST-2.zip or a zip of train.tsv, dev.tsv and test.tsv",
                missing.join(" and no ")
            )));
        }
        let mut written = 0u64;
        for (name, found) in SST2_FILES.iter().zip(chosen) {
            let Some((index, _, _)) = found else {
                return Err(bad(format!("has no {name}")));
            };
            let mut entry = archive
                .by_index(index)
                .map_err(|e| bad(format!("is damaged ({e})")))?;
            let out = std::fs::File::create(into.join(name)).map_err(AppError::internal)?;
            copy_entry(&mut entry, out, name, &mut written, MAX_UNPACKED_BYTES)?;
        }
        Ok(())
    }
}
