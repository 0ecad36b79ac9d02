# Every image, untagged ones included: `repo:tag`, `repo@digest` for digest-only rows, and the
# image ID where there is no name (untagged images, CRI's `sha256:<config>` aliases).
if .Repository != "<none>" and .Tag != "<none>" then .Repository + ":" + .Tag
elif .Repository != "<none>" and .Digest != "<none>" and .Digest != "" then .Repository + "@" + .Digest
else .ID end
