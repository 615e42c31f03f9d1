#![no_main]
#[path = "../config_targets.rs"]
mod config_targets;
libfuzzer_sys::fuzz_target!(|data: &[u8]| config_targets::config_load(data));
