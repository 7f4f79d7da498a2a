//! Fuzz the `json` decoder: no panic, bounded memory (libFuzzer's limits),
//! and chunked feeding always agrees with whole feeding.
#![no_main]

#[path = "chunked.rs"]
mod chunked;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chunked::check(mmp::media::Format::Json, data);
});
