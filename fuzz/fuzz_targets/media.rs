//! Fuzz Content-Type and Accept parsing: no panic on any header text, a
//! chosen format is always one we write, and a format's own media type
//! always parses back to it.
#![no_main]

use mmp::media::{negotiate, ContentType, Format, FORMATS};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ct) = ContentType::parse(text) {
        assert_eq!(Format::parse(ct.format.mime()).ok(), Some(ct.format));
    }
    let _ = ContentType::parse_option(text);
    for default in FORMATS {
        match negotiate(Some(text), default) {
            Ok(f) => assert!(FORMATS.contains(&f)),
            Err(e) => assert_eq!(e.status(), 406),
        }
    }
});
