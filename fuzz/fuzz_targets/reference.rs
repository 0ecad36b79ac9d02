//! Image references: parsing never panics; what parses prints back to itself, normalizes
//! idempotently, and never looks like a flag or holds whitespace.
#![no_main]

use imgkit_types::ImageRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(r) = ImageRef::parse(text) else { return };
    assert_eq!(r.to_string(), text);
    assert!(!text.starts_with('-'));
    assert!(!text.chars().any(|c| c.is_whitespace() || c.is_control()));
    let n = r.normalized();
    assert_eq!(n.normalized(), n);
    assert_eq!(ImageRef::parse(&n.to_string()).as_ref(), Ok(&n));
    let f = r.familiar();
    assert_eq!(f.normalized(), n);
});
