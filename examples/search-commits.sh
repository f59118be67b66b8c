#!/bin/sh
# search-commits.sh - search the commit messages of every repository.
#
#   examples/search-commits.sh MOUNTPOINT/WORKSPACE [-i] PATTERN
#   examples/search-commits.sh ~/bb/acme -i 'rate.?limit|429'
#
# Prints `REPO<TAB>HASH<TAB>SUBJECT` for each commit whose message matches
# PATTERN (an extended regular expression, grep -E; -i ignores case). It
# searches commits/ of each repository: the newest commit_limit commits of its
# main branch (mount with -o commit_limit=N to search deeper).
# It shows that every commit is a directory whose `message` file is the full
# message, so plain grep searches a whole workspace's history.
set -eu

icase=
if [ $# -eq 3 ] && [ "$2" = -i ]; then
    icase=-i
    set -- "$1" "$3"
fi
if [ $# -ne 2 ]; then
    echo "usage: $0 MOUNTPOINT/WORKSPACE [-i] PATTERN" >&2
    exit 2
fi
ws=$1 pattern=$2

for repo in "$ws"/*/; do
    repo=${repo%/}
    [ -d "$repo/commits" ] || continue
    set -- "$repo"/commits/*/message
    [ -e "$1" ] || continue             # a repository without commits
    grep -l -E $icase -e "$pattern" -- "$@" | while IFS= read -r msg; do
        dir=${msg%/message}
        printf '%s\t%s\t%s\n' "${repo##*/}" "${dir##*/}" "$(head -n 1 -- "$msg")"
    done
done
