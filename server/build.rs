//! Embeds the SQL migrations: writes `$OUT_DIR/migrations.rs`, one list of
//! `(file name, SQL)` per folder (`migrations/` for SQLite, `migrations/postgres/`), which
//! `src/db.rs` turns into sqlx migrators. It does what `sqlx::migrate!` did without sqlx's
//! proc-macro crate, which would build sqlx and SQLite a second time for the compiler.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../migrations");
    let mut code = String::new();
    for (constant, folder) in [
        ("SQLITE_MIGRATION_FILES", root.clone()),
        ("POSTGRES_MIGRATION_FILES", root.join("postgres")),
    ] {
        println!("cargo::rerun-if-changed={}", folder.display());
        writeln!(
            code,
            "/// The migration files of `{}`, in file name order.",
            relative(&folder)
        )
        .unwrap();
        writeln!(code, "const {constant}: &[(&str, &str)] = &[").unwrap();
        for (name, path) in sql_files(&folder) {
            writeln!(
                code,
                "    ({name:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .unwrap();
        }
        writeln!(code, "];").unwrap();
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("migrations.rs");
    fs::write(out, code).unwrap();
}

/// The `.sql` files directly in `folder`, sorted by name.
fn sql_files(folder: &Path) -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "sql"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, path.canonicalize().unwrap())
        })
        .collect();
    files.sort();
    files
}

/// `folder` from the project root, for the generated doc comment.
fn relative(folder: &Path) -> String {
    let text = folder.display().to_string();
    match text.find("/../") {
        Some(at) => text[at + 4..].to_string(),
        None => text,
    }
}
