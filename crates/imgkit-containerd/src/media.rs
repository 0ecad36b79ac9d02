//! Media types containerd stores images under.

pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub(crate) fn is_manifest(t: &str) -> bool {
    t == DOCKER_MANIFEST || t == OCI_MANIFEST
}

pub(crate) fn is_index(t: &str) -> bool {
    t == DOCKER_LIST || t == OCI_INDEX
}
