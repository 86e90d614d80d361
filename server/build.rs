//! Embeds the SQL migrations: writes `$OUT_DIR/migrations.rs`, one list of
//! `(version, description, SQL)` per folder (`migrations/` for SQLite,
//! `migrations/postgres/`), which `src/db.rs` turns into sqlx migrators. File names are read
//! as `sqlx::migrate!` reads them (`0003_runs.sql` is version 3, "runs"; a `.sql` file
//! without `_` is skipped; a version that is not a number fails the build), without sqlx's
//! proc-macro crate, which would build sqlx and SQLite a second time for the compiler.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../migrations");
    let mut code = String::new();
    for (constant, folder) in [
        ("SQLITE_MIGRATIONS", root.clone()),
        ("POSTGRES_MIGRATIONS", root.join("postgres")),
    ] {
        println!("cargo::rerun-if-changed={}", folder.display());
        writeln!(code, "const {constant}: &[(i64, &str, &str)] = &[").unwrap();
        for (version, description, path) in migrations(&folder) {
            writeln!(
                code,
                "    ({version}, {description:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .unwrap();
        }
        writeln!(code, "];").unwrap();
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("migrations.rs");
    fs::write(out, code).unwrap();
}

/// The migrations directly in `folder`, sorted by file name: version, description, path.
fn migrations(folder: &Path) -> Vec<(i64, String, PathBuf)> {
    let mut files: Vec<PathBuf> = fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let (version, rest) = name.split_once('_')?;
            let version = version.parse().unwrap_or_else(|_| {
                panic!("migration {name}: expected a number before the first `_`")
            });
            let description = rest.trim_end_matches(".sql").replace('_', " ");
            Some((version, description, path.canonicalize().unwrap()))
        })
        .collect()
}
