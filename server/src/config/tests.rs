//! Tests of configuration loading, the settings table and its README copy.

use super::*;
use std::collections::HashMap;

fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(|name| vars.get(name).cloned())
}

#[test]
fn defaults_listen_on_localhost_3000_with_sqlite_in_the_data_dir() {
    let config = load(&[("JIGSAW_DATA_DIR", "/tmp/x")]).unwrap();
    assert_eq!(config.bind.to_string(), "127.0.0.1:3000");
    assert_eq!(config.database_url, "sqlite:///tmp/x/jigsaw-lab.db");
    assert_eq!(config.models_dir, PathBuf::from("/tmp/x/models"));
    assert_eq!(config.device, DeviceChoice::Auto);
}

#[test]
fn a_bad_port_names_the_setting() {
    let error = load(&[("JIGSAW_BIND", "127.0.0.1:http")]).unwrap_err();
    assert_eq!(error.setting, "JIGSAW_BIND");
    assert!(error.message.contains("127.0.0.1:http"));
}

#[test]
fn a_bad_device_names_the_setting() {
    let error = load(&[("JIGSAW_DEVICE", "tpu")]).unwrap_err();
    assert_eq!(error.setting, "JIGSAW_DEVICE");
}

#[test]
fn the_toml_file_is_read_and_env_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jigsaw.toml");
    std::fs::write(&file, "bind = \"0.0.0.0:8080\"\ndevice = \"cpu\"\n").unwrap();
    let file = file.to_str().unwrap();
    let config = load(&[("JIGSAW_CONFIG", file)]).unwrap();
    assert_eq!(config.bind.to_string(), "0.0.0.0:8080");
    assert_eq!(config.device, DeviceChoice::Cpu);
    let config = load(&[("JIGSAW_CONFIG", file), ("JIGSAW_BIND", "127.0.0.1:9")]).unwrap();
    assert_eq!(config.bind.to_string(), "127.0.0.1:9");
}

#[test]
fn an_unknown_toml_key_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jigsaw.toml");
    std::fs::write(&file, "port = 3000\n").unwrap();
    let error = load(&[("JIGSAW_CONFIG", file.to_str().unwrap())]).unwrap_err();
    assert_eq!(error.setting, "JIGSAW_CONFIG");
    assert!(error.message.contains("port"), "{}", error.message);
}

#[test]
fn an_unwritable_data_dir_is_refused() {
    let config = load(&[("JIGSAW_DATA_DIR", "/proc/jigsaw-lab")]).unwrap();
    assert_eq!(config.preflight().unwrap_err().setting, "JIGSAW_DATA_DIR");
}

#[test]
fn a_missing_model_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(&[("JIGSAW_DATA_DIR", dir.path().to_str().unwrap())]).unwrap();
    let error = config.preflight().unwrap_err();
    assert_eq!(error.setting, "JIGSAW_MODELS_DIR");
    assert!(error.message.contains("make setup"));
}

#[test]
fn load_reads_exactly_the_listed_settings() {
    let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
    Config::load(|name| {
        asked.borrow_mut().insert(name.to_string());
        None
    })
    .unwrap();
    let mut listed: std::collections::BTreeSet<String> =
        SETTINGS.iter().map(|s| s.env.to_string()).collect();
    listed.extend([CONFIG_FILE.to_string(), "LEPTOS_SITE_ROOT".to_string()]);
    assert_eq!(asked.into_inner(), listed);
}

#[test]
fn the_listed_defaults_are_the_defaults() {
    let config = load(&[]).unwrap();
    assert_eq!(config.bind.to_string(), BIND.default);
    assert_eq!(config.data_dir, PathBuf::from(DATA_DIR.default));
    assert_eq!(
        config.device,
        DEVICE.default.parse::<DeviceChoice>().unwrap()
    );
    assert_eq!(LOG_FORMAT.default, "text");
    assert!(!config.json_logs);
    assert_eq!(config.secure_cookies.to_string(), SECURE_COOKIES.default);
    for (value, setting) in [
        (config.validation_size as i64, VALIDATION_SIZE),
        (config.max_queued_per_team, MAX_QUEUED_PER_TEAM),
        (config.max_runs_per_day, MAX_RUNS_PER_DAY),
        (config.training_slots as i64, TRAINING_SLOTS),
    ] {
        assert_eq!(value.to_string(), setting.default, "{}", setting.env);
    }
}

#[test]
fn every_listed_key_is_a_key_of_the_settings_file() {
    for setting in SETTINGS {
        // An array fits no setting, so each key is refused for its value, never its name.
        let error = toml::from_str::<FileSettings>(&format!("{} = []", setting.key))
            .unwrap_err()
            .to_string();
        assert!(!error.contains("unknown field"), "{}: {error}", setting.key);
    }
}

#[test]
fn the_readme_table_lists_every_setting() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap();
    let rows: Vec<&str> = section.lines().filter(|l| l.starts_with("| `")).collect();
    assert_eq!(rows.len(), SETTINGS.len(), "{rows:#?}");
    for setting in SETTINGS {
        let row = format!("| `{}` | `{}` |", setting.env, setting.key);
        assert!(section.contains(&row), "README lacks {row}");
    }
}

#[test]
fn settings_help_names_every_variable_and_key() {
    let help = settings_help();
    assert!(help.contains(CONFIG_FILE));
    for setting in SETTINGS {
        assert!(help.contains(&format!("{} (key {})", setting.env, setting.key)));
    }
}

#[test]
fn missing_sst2_says_where_to_put_it() {
    let config = load(&[("JIGSAW_SST2_DIR", "/nonexistent/sst2")]).unwrap();
    let warning = config.sst2_warning().unwrap();
    assert!(warning.contains("train.tsv") && warning.contains("/nonexistent/sst2"));
}
