//! Says which islands this build renders as islands (`#[island]`) rather than as plain
//! components, one cfg per islands bundle (see `src/islands.rs`): the server renders every
//! island (`ssr`), and each islands bundle holds only its own group's, so a page downloads
//! the code of its own islands and not of every other page's.

/// Each cfg and the cargo feature that asks for it in a browser build.
const GROUPS: [(&str, &str); 4] = [
    ("lessons_islands", "LESSONS_ISLANDS"),
    ("class_islands", "CLASS_ISLANDS"),
    ("runs_islands", "RUNS_ISLANDS"),
    ("instructor_islands", "INSTRUCTOR_ISLANDS"),
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let feature = |name: &str| std::env::var_os(format!("CARGO_FEATURE_{name}")).is_some();
    for (cfg, group) in GROUPS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if feature("SSR") || feature(group) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
