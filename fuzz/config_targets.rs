//! The body of the `config_load` fuzz target, shared with `cargo test`
//! (`crates/config/tests/fuzz_corpus.rs` replays the corpus through it).

use std::path::Path;

use anygate_config::{Format, load_str};

/// Input: one byte choosing the format (`y`, `j`, `t`; anything else is YAML), then the
/// document; after a line `%ENV`, lines `NAME=VALUE` are environment overrides. Loading must
/// never panic, every diagnostic must render, and a valid configuration's table must render.
pub fn config_load(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let format = match kind {
        b'j' => Format::Json,
        b't' => Format::Toml,
        _ => Format::Yaml,
    };
    let text = String::from_utf8_lossy(rest);
    let (doc, env) = text.split_once("\n%ENV\n").unwrap_or((&text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    match load_str(
        "fuzz",
        doc,
        format,
        Path::new("/nonexistent-anygate-fuzz"),
        &env,
    ) {
        Ok(config) => {
            for rule in config.router.in_priority_order() {
                let _ = config.routes[rule.1.value].label();
            }
            for w in &config.warnings {
                let _ = w.render(&config.sources);
            }
            let _ = config.acme_domains(&["*.example.com".to_owned()]);
        }
        Err(failure) => {
            assert!(
                failure.errors().next().is_some(),
                "a failure without an error"
            );
            let _ = failure.to_string();
        }
    }
}
