#![no_main]
#[path = "../tls_targets.rs"]
mod tls_targets;
libfuzzer_sys::fuzz_target!(|data: &[u8]| tls_targets::x509_facts(data));
