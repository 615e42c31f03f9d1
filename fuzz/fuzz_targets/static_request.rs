#![no_main]
#[path = "../static_targets.rs"]
mod static_targets;
libfuzzer_sys::fuzz_target!(|data: &[u8]| static_targets::static_request(data));
