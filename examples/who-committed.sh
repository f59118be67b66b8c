#!/bin/sh
# who-committed.sh - who committed in the last DAYS days (default 7), across
# every repository of the mount.
#
#   examples/who-committed.sh MOUNTPOINT/WORKSPACE [DAYS]
#   NOW=2024-01-05 examples/who-committed.sh ~/bb/acme    # the week before that day
#
# Prints `COUNT<TAB>AUTHOR` (AUTHOR as `Name <email>`), most commits first.
# It counts the commits in commits/ of each repository (the newest
# commit_limit commits of its main branch) dated after NOW - DAYS and not
# after NOW. NOW (anything `date -d` reads, e.g. @EPOCH) replaces the current
# time.
# It shows that a commit directory's mtime is the commit's date, so `find
# -newermt` picks the recent ones without reading them, and that jq reads
# commit.json for the rest.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 MOUNTPOINT/WORKSPACE [DAYS]" >&2
    exit 2
fi
ws=$1 days=${2:-7}
now=$(date -u -d "${NOW:-now}" +%s)
since=$((now - days * 86400))
tab=$(printf '\t')

for repo in "$ws"/*/; do
    [ -d "${repo}commits" ] || continue
    find "${repo}commits" -mindepth 1 -maxdepth 1 -type d \
        -newermt "@$since" ! -newermt "@$now" -print |
        while IFS= read -r commit; do
            jq -r '.author.raw' "$commit/commit.json"
        done
done | sort | uniq -c | sed 's/^ *\([0-9]*\) /\1\t/' | sort -t "$tab" -k1,1nr -k2,2
