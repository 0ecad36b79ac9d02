# Untagged images: `<none>:<none>` rows by image ID, digest-only rows (`repo@sha256:…`, Tag
# `<none>`) by digest. A filter sees one record at a time: a digest alias of an image that is
# also tagged (CRI keeps `repo@sha256:…` next to `repo:tag`) is untagged as a row, and selected.
select(.Tag == "<none>")
| if .Repository != "<none>" and .Digest != "<none>" and .Digest != "" then .Repository + "@" + .Digest
  else .ID end
