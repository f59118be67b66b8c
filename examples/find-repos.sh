#!/bin/sh
# find-repos.sh - the repositories whose repository.json has FIELD = VALUE.
#
#   examples/find-repos.sh MOUNTPOINT/WORKSPACE FIELD VALUE          # with jq
#   examples/find-repos.sh MOUNTPOINT/WORKSPACE --grep FIELD VALUE   # with grep only
#
#   examples/find-repos.sh ~/bb/acme language c
#   examples/find-repos.sh ~/bb/acme project.key PLAT
#   examples/find-repos.sh ~/bb/acme --grep is_private false
#
# Prints the matching repositories' directory names (their slugs), one a line.
# It shows that repository.json is the API's object pretty-printed, so both
# jq and line tools work on it. With jq, FIELD is a dotted path into the
# object (project.key, mainbranch.name) and VALUE is compared with the field's
# text: a string as it is, anything else as JSON (true, false, null, 42).
# With --grep, only top-level fields can be matched: bbfs indents by two
# spaces, so a line `  "FIELD": VALUE` is a field of the object itself.
set -eu

mode="jq"
if [ $# -eq 4 ] && [ "$2" = --grep ]; then
    mode="grep"
    set -- "$1" "$3" "$4"
fi
if [ $# -ne 3 ]; then
    echo "usage: $0 MOUNTPOINT/WORKSPACE [--grep] FIELD VALUE" >&2
    exit 2
fi
ws=$1 field=$2 value=$3

for json in "$ws"/*/repository.json; do
    [ -f "$json" ] || continue
    if [ "$mode" = grep ]; then
        # A string, or a number/true/false/null; the last field has no comma.
        grep -qxF -e "  \"$field\": \"$value\"," -e "  \"$field\": \"$value\"" \
            -e "  \"$field\": $value," -e "  \"$field\": $value" -- "$json" || continue
    else
        jq -e --arg field "$field" --arg value "$value" \
            '(try getpath($field | split(".")) catch null)
             | (if type == "string" then . else tojson end) == $value' \
            "$json" >/dev/null || continue
    fi
    basename "$(dirname "$json")"
done
