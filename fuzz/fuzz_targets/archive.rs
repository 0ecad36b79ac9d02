//! Whole archives from a stream (plain, gzip or zstd): reading, listing and verifying never
//! panic, whatever the bytes, and stay within small limits.
#![no_main]

use imgkit_archive::{Archive, ExpansionLimit, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_json: 1 << 20, expansion: ExpansionLimit { floor: 4 << 20, ratio: 64 } };
    if let Ok(archive) = Archive::from_reader(std::io::Cursor::new(data.to_vec()), limits) {
        for record in archive.records_at(1_800_000_000) {
            let _ = record.to_json_line();
        }
    }
    let _ = imgkit_archive::verify_reader(std::io::Cursor::new(data.to_vec()), limits);
});
