#![no_main]
#[path = "../http_targets.rs"]
#[allow(dead_code)] // each target uses one of the shared bodies
mod http_targets;
libfuzzer_sys::fuzz_target!(|data: &[u8]| http_targets::response_head(data));
