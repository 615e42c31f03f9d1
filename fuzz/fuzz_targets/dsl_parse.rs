#![no_main]
#[path = "../targets.rs"]
#[allow(dead_code)] // each target uses one of the shared bodies
mod targets;
libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::dsl_parse(data));
