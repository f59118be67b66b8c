/*
 * parse.h - JSON objects of the Bitbucket API to api.h structs (internal to api/).
 *
 * Pure functions, no I/O, so that unit tests can feed them fixtures. Each
 * parse_* takes a borrowed json_t and fills a caller-provided struct with
 * copies (nothing in the result points into the JSON). They return:
 *
 *   0        filled in; release with the matching *_release
 *   -EINVAL  the object cannot be used (no name, no valid hash, ...): the
 *            struct is left zeroed, the caller skips or fails as it sees fit
 *   -ENOMEM
 *
 * Timestamps that are absent or unparsable become 0 (logged once).
 */
#ifndef BBFS_API_PARSE_H
#define BBFS_API_PARSE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"

/*
 * Flags for every json_load*() of API bodies: a "\u0000" inside one string
 * must not make a whole page unreadable. Names and hashes holding one are
 * refused by the parse_* functions (they would alias shorter names); free
 * text (descriptions, messages) is cut at it.
 */
#define PARSE_JSON_FLAGS JSON_ALLOW_NUL

/*
 * ISO-8601 as the API writes it ("2018-09-21T15:53:38.794718+00:00",
 * "...+02:00", "...Z"; a missing zone means UTC) to seconds since the epoch,
 * offset applied, independent of TZ and locale. 0 or -EINVAL.
 */
int parse_time(const char *s, int64_t *out);

/* obj re-serialised: 2-space indent, key order kept, UTF-8 kept, trailing newline. */
int parse_doc(json_t *obj, struct api_doc *out);

int parse_repo(json_t *obj, struct api_repo *out);
void parse_repo_release(struct api_repo *repo);

/* name and target.hash (40 lowercase hex) are required; target.date optional. */
int parse_ref(json_t *obj, struct api_ref *out);
void parse_ref_release(struct api_ref *ref);

int parse_commit_summary(json_t *obj, struct api_commit_summary *out);
/* hash and every parents[].hash must be full hashes. */
int parse_commit(json_t *obj, struct api_commit *out);

/*
 * id (a positive integer) is required; hashes that are not 7 to 40 lowercase
 * hex digits read as "".
 */
int parse_pullrequest(json_t *obj, struct api_pullrequest *out);

/*
 * One entry of a /src listing of directory dir ("" for the root). The
 * entry's path must be dir + "/" + name (just name at the root) with name
 * non-empty and free of '/' and NUL; name is copied, not sanitised ("."
 * and ".." included: the filesystem layer filters names). type
 * commit_directory is a directory; commit_file is a symlink with the
 * attribute "link", a submodule with "subrepository", else a file;
 * "executable" and "lfs" set the flags. attributes may be a list of
 * strings, one string (the schema's reading), null or absent. size: a
 * missing or negative one reads as 0. -EINVAL for anything else (skip it).
 */
int parse_entry(json_t *obj, const char *dir, struct api_entry *out);
void parse_entry_release(struct api_entry *entry);

/*
 * The message of a Bitbucket error body {"type":"error","error":{"message":
 * ..., "detail": ...}} ("message: detail" when both), sanitised for logging,
 * into dst. 0, or -ENOENT when body is not such an object.
 */
int parse_error_message(const char *body, size_t len, char *dst, size_t dstlen);

/* obj[key] when it is a string, else NULL (absent, null, another type); cut at a NUL. */
const char *parse_get_string(json_t *obj, const char *key);
/* Like parse_get_string(), but NULL for a string holding a NUL character. */
const char *parse_get_ident(json_t *obj, const char *key);

#endif
