//! The files of an upload being added (a model, or the training data): a hidden staging
//! folder beside where they go, the copy of a folder and the unpacking of a zip, each
//! refusing what could escape the folder or outgrow the limit.

use crate::error::AppError;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The most files an uploaded zip may hold.
const MAX_ZIP_ENTRIES: usize = 1000;

/// A hidden folder beside the models that is deleted on drop unless kept.
pub(crate) struct Staging {
    path: PathBuf,
    keep: bool,
}

impl Staging {
    pub(crate) fn path_for(dir: &Path, purpose: &str, name: &str) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        dir.join(format!(".{purpose}-{name}-{}-{nanos}", std::process::id()))
    }

    pub(crate) fn new(dir: &Path, purpose: &str, name: &str) -> Result<Self, AppError> {
        let path = Self::path_for(dir, purpose, name);
        std::fs::create_dir(&path).map_err(AppError::internal)?;
        Ok(Self { path, keep: false })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Copies the files of the HF folder `source` (and its subfolders, links followed,
/// hidden entries such as `.git` left out) into `into`, refusing more than `max_bytes`
/// in all (`copied` counts them).
pub(crate) fn copy_folder(
    source: &Path,
    into: &Path,
    copied: &mut u64,
    max_bytes: u64,
) -> Result<(), AppError> {
    let unreadable = |e: std::io::Error| {
        AppError::bad_request(format!("{} cannot be read: {e}", source.display()))
    };
    for entry in std::fs::read_dir(source).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let metadata = std::fs::metadata(&path).map_err(unreadable)?;
        let target = into.join(entry.file_name());
        if metadata.is_dir() {
            std::fs::create_dir(&target).map_err(AppError::internal)?;
            copy_folder(&path, &target, copied, max_bytes)?;
        } else if metadata.is_file() {
            *copied += metadata.len();
            if *copied > max_bytes {
                return Err(AppError::bad_request(format!(
                    "The model folder holds more than {} MB.",
                    max_bytes >> 20
                )));
            }
            std::fs::copy(&path, &target).map_err(unreadable)?;
        }
    }
    Ok(())
}

/// A folder inside a zip as a message names it.
fn shown(folder: &Path) -> String {
    if folder.as_os_str().is_empty() {
        "the top level".into()
    } else {
        format!("\u{201c}{}\u{201d}", folder.display())
    }
}

/// Opens the uploaded zip at `zip_path`, refusing one that does not read as a zip, or one
/// of more than `max_entries` entries (`too_many` says why, given the count), with a
/// message that starts "The zip".
pub(crate) fn open_zip(
    zip_path: &Path,
    max_entries: usize,
    too_many: impl FnOnce(usize) -> String,
) -> Result<zip::ZipArchive<std::fs::File>, AppError> {
    let bad = |what: String| AppError::bad_request(format!("The zip {what}."));
    let file = std::fs::File::open(zip_path).map_err(AppError::internal)?;
    let archive = zip::ZipArchive::new(file)
        .map_err(|e| bad(format!("cannot be read ({e}); is it a .zip file?")))?;
    if archive.len() > max_entries {
        return Err(bad(too_many(archive.len())));
    }
    Ok(archive)
}

/// Unpacks the HF folder in the zip at `zip_path` into `into`: the files beside the
/// shallowest `config.json` and below it. Refuses entries that would land outside
/// `into` (absolute paths, `..`, links), more than [`MAX_ZIP_ENTRIES`] files, and more
/// than `max_bytes` unpacked, whatever the zip's headers claim.
pub(crate) fn unpack_zip(zip_path: &Path, into: &Path, max_bytes: u64) -> Result<(), AppError> {
    let bad = |what: String| AppError::bad_request(format!("The zip {what}."));
    let mut archive = open_zip(zip_path, MAX_ZIP_ENTRIES, |entries| {
        format!("holds {entries} files; a model folder has at most {MAX_ZIP_ENTRIES}")
    })?;
    let mut paths = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| bad(format!("is damaged ({e})")))?;
        if entry.is_symlink() {
            return Err(bad(format!(
                "holds a link, {}, which is not allowed",
                String::from_utf8_lossy(entry.name_raw())
            )));
        }
        let Some(path) = entry.enclosed_name() else {
            return Err(bad(format!(
                "holds a path outside its folder, \u{201c}{}\u{201d}",
                String::from_utf8_lossy(entry.name_raw())
            )));
        };
        paths.push((path, entry.is_dir()));
    }
    let mut roots: Vec<PathBuf> = paths
        .iter()
        .filter(|(path, is_dir)| !is_dir && path.file_name().is_some_and(|f| f == "config.json"))
        .map(|(path, _)| path.parent().map(Path::to_path_buf).unwrap_or_default())
        .collect();
    let shallowest = roots.iter().map(|r| r.components().count()).min();
    roots.retain(|root| Some(root.components().count()) == shallowest);
    let root = match roots.as_slice() {
        [] => {
            return Err(bad(
                "has no config.json: zip the model's folder as transformers saves it".into(),
            ));
        }
        [root] => root.clone(),
        [first, second, ..] => {
            return Err(bad(format!(
                "holds several models ({} and {}); zip one model's folder",
                shown(first),
                shown(second)
            )));
        }
    };
    let mut written = 0u64;
    for (index, (path, is_dir)) in paths.into_iter().enumerate() {
        let Ok(relative) = path.strip_prefix(&root) else {
            continue;
        };
        if is_dir || relative.as_os_str().is_empty() {
            continue;
        }
        let target = into.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(AppError::internal)?;
        }
        let mut entry = archive
            .by_index(index)
            .map_err(|e| bad(format!("is damaged ({e})")))?;
        let out = std::fs::File::create(&target).map_err(AppError::internal)?;
        copy_entry(
            &mut entry,
            out,
            &relative.display().to_string(),
            &mut written,
            max_bytes,
        )?;
    }
    Ok(())
}

/// Copies one zip entry (`shown` as its name in messages) into `out`, counting the bytes
/// in `written`: refused past `max_bytes` in all, whatever the zip's headers claim.
pub(crate) fn copy_entry(
    entry: &mut impl Read,
    mut out: std::fs::File,
    shown: &str,
    written: &mut u64,
    max_bytes: u64,
) -> Result<(), AppError> {
    let bad = |what: String| AppError::bad_request(format!("The zip {what}."));
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = entry
            .read(&mut buffer)
            .map_err(|e| bad(format!("is damaged at {shown} ({e})")))?;
        if read == 0 {
            return Ok(());
        }
        *written += read as u64;
        if *written > max_bytes {
            return Err(bad(format!(
                "unpacks to more than {} MB",
                max_bytes / (1 << 20)
            )));
        }
        out.write_all(&buffer[..read]).map_err(AppError::internal)?;
    }
}
