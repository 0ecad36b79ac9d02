//! The JSON documents of archives (index, manifest, docker manifest.json, config) and the
//! timestamps in configs: any bytes give a value or an error, never a panic.
#![no_main]

use imgkit_archive::oci;
use imgkit_types::humanize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = oci::kind_of("", data);
    if let Ok(index) = oci::parse_index(data) {
        for d in &index.manifests {
            let _ = d.digest.parse::<imgkit_types::Digest>();
        }
    }
    let _ = oci::parse_manifest(data);
    let _ = oci::parse_docker_manifest(data);
    if let Ok(config) = oci::parse_config(data)
        && let Some(created) = config.created
        && let Some(t) = humanize::parse_rfc3339(&created)
    {
        let _ = humanize::created_at(t);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(t) = humanize::parse_rfc3339(text)
    {
        let _ = humanize::created_at(t);
    }
});
