#!/bin/sh
# open-pullrequests.sh - the open pull requests of every repository, oldest first.
#
#   examples/open-pullrequests.sh MOUNTPOINT/WORKSPACE
#   examples/open-pullrequests.sh ~/bb/acme
#
# Prints `CREATED<TAB>REPO<TAB>ID<TAB>AUTHOR<TAB>TITLE` per open pull request,
# the longest-waiting first (CREATED is the API's created_on). It shows that
# pullrequests/ lists the open ones, each with its object in pullrequest.json:
# listing them costs a request per 50 pull requests of a repository, reading
# their files none. The token needs the pullrequest scope; without it every
# pullrequests/ is empty. Needs jq.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 MOUNTPOINT/WORKSPACE" >&2
    exit 2
fi
ws=$1

for pr in "$ws"/*/pullrequests/*/; do
    [ -e "$pr/pullrequest.json" ] || continue      # no pull requests at all
    repo=${pr%/pullrequests/*}
    jq -r --arg repo "${repo##*/}" \
        '[.created_on, $repo, (.id | tostring), (.author.display_name // ""),
          (.title | gsub("[\t\n]"; " "))] | join("\t")' "$pr/pullrequest.json"
done | sort
