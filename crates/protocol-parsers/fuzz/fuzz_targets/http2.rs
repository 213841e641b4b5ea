#![no_main]
// Placeholder until the http2 parser lands; replaced by its owner.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = data;
});
