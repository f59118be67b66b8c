#!/bin/sh
# old-branches.sh - branches whose newest commit is older than DAYS days, in
# every repository of the mount: candidates for cleaning up.
#
#   examples/old-branches.sh MOUNTPOINT/WORKSPACE DAYS
#   NOW=2024-02-01 examples/old-branches.sh ~/bb/acme 30    # as if it were that day
#
# Prints `DATE<TAB>REPO<TAB>BRANCH<TAB>HASH`, oldest first, DATE being the head
# commit's date (UTC, ISO 8601). NOW (anything `date -d` reads, e.g. @EPOCH)
# replaces the current time.
# It shows that branches/NAME is a symlink to ../commits/HASH, that names with
# slashes (feature/x) are nested directories (hence find), and that a commit
# directory's mtime is the commit's date, so `stat -L` answers without
# reading any JSON.
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 MOUNTPOINT/WORKSPACE DAYS" >&2
    exit 2
fi
ws=$1 days=$2
now=$(date -u -d "${NOW:-now}" +%s)
limit=$((now - days * 86400))

for repo in "$ws"/*/; do
    repo=${repo%/}
    [ -d "$repo/branches" ] || continue
    (cd "$repo/branches" && find . -type l) | sed 's|^\./||' | while IFS= read -r branch; do
        t=$(stat -L -c %Y -- "$repo/branches/$branch")
        [ "$t" -lt "$limit" ] || continue
        hash=$(basename "$(readlink -- "$repo/branches/$branch")")
        printf '%s\t%s\t%s\t%s\n' "$t" "${repo##*/}" "$branch" "$hash"
    done
done | sort -n -k1,1 | while IFS="$(printf '\t')" read -r t repo branch hash; do
    printf '%s\t%s\t%s\t%s\n' "$(date -u -d "@$t" +%Y-%m-%dT%H:%M:%SZ)" "$repo" "$branch" "$hash"
done
