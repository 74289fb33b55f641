#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| riptide_fuzz::storage::notification(data));
