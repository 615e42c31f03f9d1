#![no_main]
#[path = "../obs_targets.rs"]
mod obs_targets;
libfuzzer_sys::fuzz_target!(|data: &[u8]| obs_targets::log_line(data));
