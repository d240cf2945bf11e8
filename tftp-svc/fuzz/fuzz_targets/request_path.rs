//! Any file name a client can send: parsing must not panic, and whatever is accepted is a
//! clean relative name.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = bootfiles::parse_request_path(s) {
            assert!(!p.name.starts_with('/'));
            assert!(p.name.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
        }
    }
});
