#!/bin/sh
# file-at-tag.sh - copy a file as it was at a tag (or a branch, or a commit).
#
#   examples/file-at-tag.sh MOUNTPOINT/WORKSPACE REPO TAG PATH [DEST]
#   examples/file-at-tag.sh ~/bb/acme api v1 src/api.c /tmp/api-v1.c
#
# Copies REPO's PATH at TAG to DEST (default: PATH's file name in the current
# directory), writable by its owner (files in the mount are read-only) and
# keeping the executable bit, and says which commit it came from.
# It shows that tags/NAME is a symlink to ../commits/HASH, whose tree/ holds
# the repository's files at that commit: cp needs no git and no clone.
set -eu

if [ $# -lt 4 ] || [ $# -gt 5 ]; then
    echo "usage: $0 MOUNTPOINT/WORKSPACE REPO TAG PATH [DEST]" >&2
    exit 2
fi
ws=$1 repo=$2 tag=$3 path=$4
dest=${5:-$(basename -- "$path")}
commit=$ws/$repo/tags/$tag

if [ ! -d "$commit" ]; then
    echo "$0: no tag '$tag' in '$repo'" >&2
    exit 1
fi
cp -- "$commit/tree/$path" "$dest"
chmod u+w -- "$dest"
echo "$repo/$path at $tag ($(basename "$(readlink -- "$commit")")) -> $dest"
