//! Arbitrary text as an experiment file and `--set` overrides: loading returns a validated
//! configuration or an error naming the key, never panics or allocates without bound, and a
//! loaded configuration written as a run's `config.toml` reads back the same.
//!
//! Input layout: the experiment TOML, then optionally a line `--` followed by one `--set`
//! argument (`key=value`) a line.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lvface_train::{Experiment, TrainConfig};

fn folder() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lvface-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the scratch folder should be writable");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (experiment, sets) = text.split_once("\n--\n").unwrap_or((text, ""));
    let sets: Vec<String> = sets.lines().map(str::to_string).collect();
    let dir = folder();
    let path = dir.join("experiment.toml");
    std::fs::write(&path, experiment).expect("the experiment should be writable");
    // The same text as a run's resolved configuration.
    let _ = TrainConfig::read_resolved(&path);
    let Ok(config) = TrainConfig::load(&Experiment::File(path), &sets) else {
        return;
    };
    let resolved = dir.join("config.toml");
    let text = config.to_toml().expect("a loaded configuration should write as TOML");
    std::fs::write(&resolved, text).expect("config.toml should be writable");
    let again = TrainConfig::read_resolved(&resolved).expect("config.toml should read back");
    // Debug output compares NaN values too, which `==` would call different.
    assert_eq!(format!("{again:?}"), format!("{config:?}"));
});
