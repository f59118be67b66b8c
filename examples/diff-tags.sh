#!/bin/sh
# diff-tags.sh - compare a file, or the whole tree, between two tags.
#
#   examples/diff-tags.sh MOUNTPOINT/WORKSPACE REPO TAG1 TAG2 [PATH]
#   examples/diff-tags.sh ~/bb/acme api v1 v2 README.md
#   examples/diff-tags.sh ~/bb/acme api v1 v2 | diffstat
#
# Prints a unified diff (a/PATH, b/PATH) of PATH from TAG1 to TAG2, or of every
# file when PATH is not given; a file missing at one tag counts as empty.
# Exits as diff(1) does: 0 when equal, 1 when different, 2 on trouble. Tags
# are the usual example; branch names work too.
# It shows that tags/NAME/tree/ is the repository's tree at the tag, so plain
# diff compares two versions without a clone.
set -eu

if [ $# -lt 4 ] || [ $# -gt 5 ]; then
    echo "usage: $0 MOUNTPOINT/WORKSPACE REPO TAG1 TAG2 [PATH]" >&2
    exit 2
fi
ws=$1 repo=$2 old=$3 new=$4
for tag in "$old" "$new"; do
    if [ ! -d "$ws/$repo/tags/$tag" ]; then
        echo "$0: no tag '$tag' in '$repo'" >&2
        exit 2
    fi
done

if [ $# -eq 5 ]; then
    path=$5
    exec diff -u -N --label "a/$path" --label "b/$path" \
        -- "$ws/$repo/tags/$old/tree/$path" "$ws/$repo/tags/$new/tree/$path"
fi
# From tags/, so that the paths read TAG/tree/PATH.
cd "$ws/$repo/tags"
exec diff -r -u -N --no-dereference -- "$old/tree" "$new/tree"
