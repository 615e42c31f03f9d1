#![no_main]
#[path = "../plugins_targets.rs"]
mod plugins_targets;
libfuzzer_sys::fuzz_target!(|data: &[u8]| plugins_targets::credentials(data));
