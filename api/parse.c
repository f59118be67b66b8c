/*
 * parse.c - Bitbucket JSON objects to the structs of api.h.
 *
 * Strings borrowed from jansson die with their root, so every string kept is
 * copied here. Optional fields are looked up by hand rather than with "s?s"
 * unpack formats, because the API writes null for some absent values
 * (mainbranch of an empty repository) and null must read as "absent".
 */
#include "api/parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/log.h"

int api_is_full_hash(const char *s)
{
    size_t i;

    if (!s)
        return 0;
    for (i = 0; i < API_HASH_LEN; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return s[API_HASH_LEN] == '\0';
}

const char *parse_get_string(json_t *obj, const char *key)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

    return json_is_string(v) ? json_string_value(v) : NULL;
}

const char *parse_get_ident(json_t *obj, const char *key)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;

    return s && strlen(s) == json_string_length(v) ? s : NULL;
}

/* obj.k1.k2 as an identifier (see parse_get_ident), or NULL. */
static const char *get_ident2(json_t *obj, const char *k1, const char *k2)
{
    json_t *mid = json_is_object(obj) ? json_object_get(obj, k1) : NULL;

    return parse_get_ident(mid, k2);
}

/* Reads exactly n decimal digits. */
static int read_digits(const char **p, int n, int *out)
{
    int v = 0;

    while (n-- > 0) {
        if (**p < '0' || **p > '9')
            return -1;
        v = v * 10 + (*(*p)++ - '0');
    }
    *out = v;
    return 0;
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return month == 2 && leap ? 29 : days[month - 1];
}

int parse_time(const char *s, int64_t *out)
{
    int year, mon, day, hour, min, sec, oh = 0, om = 0, sign = 0;
    const char *p = s;
    struct tm tm;
    time_t t;

    if (!s)
        return -EINVAL;
    if (read_digits(&p, 4, &year) || *p++ != '-' || read_digits(&p, 2, &mon) || *p++ != '-' ||
        read_digits(&p, 2, &day))
        return -EINVAL;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -EINVAL;
    p++;
    if (read_digits(&p, 2, &hour) || *p++ != ':' || read_digits(&p, 2, &min) || *p++ != ':' ||
        read_digits(&p, 2, &sec))
        return -EINVAL;
    if (*p == '.' || *p == ',') {
        p++;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        while (*p >= '0' && *p <= '9')
            p++; /* sub-second part: ignored */
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '-' ? -1 : 1;
        if (read_digits(&p, 2, &oh))
            return -EINVAL;
        if (*p == ':')
            p++;
        if (read_digits(&p, 2, &om))
            return -EINVAL;
    }
    if (*p != '\0')
        return -EINVAL;
    if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hour > 23 || min > 59 ||
        sec > 60 || oh > 23 || om > 59)
        return -EINVAL;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    t = timegm(&tm);
    *out = (int64_t)t - (int64_t)sign * (oh * 3600 + om * 60);
    return 0;
}

/* A timestamp field: 0 when absent, 0 and a log line (once) when unparsable. */
static int64_t time_field(const char *s)
{
    char clean[64];
    int64_t t;

    if (!s)
        return 0;
    if (parse_time(s, &t) == 0)
        return t;
    log_sanitize(clean, sizeof(clean), s);
    log_once(LOG_LEVEL_WARN, "parse:time", "ignoring unparsable timestamp '%s'", clean);
    return 0;
}

/* Copies s (or fallback when s is NULL; NULL stays NULL). 0 or -ENOMEM. */
static int dup_or(char **dst, const char *s, const char *fallback)
{
    if (!s)
        s = fallback;
    if (!s) {
        *dst = NULL;
        return 0;
    }
    *dst = strdup(s);
    return *dst ? 0 : -ENOMEM;
}

void api_doc_release(struct api_doc *doc)
{
    if (!doc)
        return;
    free(doc->text);
    doc->text = NULL;
    doc->len = 0;
}

int parse_doc(json_t *obj, struct api_doc *out)
{
    char *text, *grown;
    size_t len;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(obj) && !json_is_array(obj))
        return -EINVAL;
    text = json_dumps(obj, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text)
        return -ENOMEM;
    len = strlen(text);
    grown = realloc(text, len + 2);
    if (!grown) {
        free(text);
        return -ENOMEM;
    }
    grown[len] = '\n';
    grown[len + 1] = '\0';
    out->text = grown;
    out->len = len + 1;
    return 0;
}

void parse_repo_release(struct api_repo *repo)
{
    if (!repo)
        return;
    free(repo->slug);
    free(repo->uuid);
    free(repo->full_name);
    free(repo->description);
    free(repo->mainbranch);
    free(repo->html_url);
    free(repo->project_key);
    api_doc_release(&repo->doc);
    memset(repo, 0, sizeof(*repo));
}

int parse_repo(json_t *obj, struct api_repo *out)
{
    const char *slug;
    json_error_t jerr;
    json_t *links, *size;
    int rc;

    memset(out, 0, sizeof(*out));
    if (json_unpack_ex(obj, &jerr, 0, "{s:s}", "slug", &slug) < 0 || !*slug ||
        !parse_get_ident(obj, "slug"))
        return -EINVAL;
    links = json_object_get(obj, "links");
    rc = dup_or(&out->slug, slug, NULL);
    if (!rc)
        rc = dup_or(&out->uuid, parse_get_ident(obj, "uuid"), "");
    if (!rc)
        rc = dup_or(&out->full_name, parse_get_string(obj, "full_name"), "");
    if (!rc)
        rc = dup_or(&out->description, parse_get_string(obj, "description"), "");
    if (!rc)
        rc = dup_or(&out->mainbranch, get_ident2(obj, "mainbranch", "name"), NULL);
    if (!rc)
        rc = dup_or(&out->html_url, get_ident2(links, "html", "href"), NULL);
    if (!rc)
        rc = dup_or(&out->project_key, get_ident2(obj, "project", "key"), NULL);
    if (!rc)
        rc = parse_doc(obj, &out->doc);
    if (rc < 0) {
        parse_repo_release(out);
        return rc;
    }
    out->created_on = time_field(parse_get_ident(obj, "created_on"));
    out->updated_on = time_field(parse_get_ident(obj, "updated_on"));
    size = json_object_get(obj, "size");
    if (json_is_integer(size) && json_integer_value(size) > 0)
        out->size = (uint64_t)json_integer_value(size);
    return 0;
}

/* A commit hash as pull requests give them: 7 to 40 lowercase hex digits, copied into dst. */
static void copy_abbrev_hash(char dst[API_HASH_LEN + 1], const char *s)
{
    size_t n = s ? strspn(s, "0123456789abcdef") : 0;
    dst[0] = '\0';
    if (s && n >= 7 && n <= API_HASH_LEN && s[n] == '\0')
        memcpy(dst, s, n + 1);
}

static const char *get_ident3(json_t *obj, const char *k1, const char *k2, const char *k3)
{
    return get_ident2(json_object_get(obj, k1), k2, k3);
}

void api_pullrequest_release(struct api_pullrequest *pr)
{
    if (!pr)
        return;
    free(pr->title);
    free(pr->description);
    free(pr->state);
    api_doc_release(&pr->doc);
    memset(pr, 0, sizeof(*pr));
}

int parse_pullrequest(json_t *obj, struct api_pullrequest *out)
{
    json_int_t id;
    json_error_t jerr;
    int rc;

    memset(out, 0, sizeof(*out));
    if (json_unpack_ex(obj, &jerr, 0, "{s:I}", "id", &id) < 0 || id <= 0)
        return -EINVAL;
    out->id = (uint64_t)id;
    rc = dup_or(&out->title, parse_get_string(obj, "title"), "");
    if (!rc)
        rc = dup_or(&out->description, parse_get_string(obj, "description"), "");
    if (!rc)
        rc = dup_or(&out->state, parse_get_ident(obj, "state"), "");
    if (!rc)
        rc = parse_doc(obj, &out->doc);
    if (rc < 0) {
        api_pullrequest_release(out);
        return rc;
    }
    copy_abbrev_hash(out->source, get_ident3(obj, "source", "commit", "hash"));
    copy_abbrev_hash(out->destination, get_ident3(obj, "destination", "commit", "hash"));
    out->created_on = time_field(parse_get_ident(obj, "created_on"));
    out->updated_on = time_field(parse_get_ident(obj, "updated_on"));
    return 0;
}

void parse_ref_release(struct api_ref *ref)
{
    if (!ref)
        return;
    free(ref->name);
    memset(ref, 0, sizeof(*ref));
}

int parse_ref(json_t *obj, struct api_ref *out)
{
    const char *name, *hash;
    json_error_t jerr;

    memset(out, 0, sizeof(*out));
    if (json_unpack_ex(obj, &jerr, 0, "{s:s, s:{s:s}}", "name", &name, "target", "hash", &hash) <
            0 ||
        !*name || !parse_get_ident(obj, "name") || !api_is_full_hash(hash) ||
        !get_ident2(obj, "target", "hash"))
        return -EINVAL;
    out->name = strdup(name);
    if (!out->name)
        return -ENOMEM;
    memcpy(out->target, hash, API_HASH_LEN + 1);
    out->date = time_field(get_ident2(obj, "target", "date"));
    return 0;
}

int parse_commit_summary(json_t *obj, struct api_commit_summary *out)
{
    const char *hash;
    json_error_t jerr;

    memset(out, 0, sizeof(*out));
    if (json_unpack_ex(obj, &jerr, 0, "{s:s}", "hash", &hash) < 0 || !api_is_full_hash(hash) ||
        !parse_get_ident(obj, "hash"))
        return -EINVAL;
    memcpy(out->hash, hash, API_HASH_LEN + 1);
    out->date = time_field(parse_get_ident(obj, "date"));
    return 0;
}

void api_commit_release(struct api_commit *commit)
{
    if (!commit)
        return;
    free(commit->message);
    free(commit->parents);
    free(commit->html_url);
    api_doc_release(&commit->doc);
    memset(commit, 0, sizeof(*commit));
}

int parse_commit(json_t *obj, struct api_commit *out)
{
    const char *hash, *parent;
    json_error_t jerr;
    json_t *parents;
    size_t i, n;
    int rc;

    memset(out, 0, sizeof(*out));
    if (json_unpack_ex(obj, &jerr, 0, "{s:s}", "hash", &hash) < 0 || !api_is_full_hash(hash) ||
        !parse_get_ident(obj, "hash"))
        return -EINVAL;
    parents = json_object_get(obj, "parents");
    if (parents && !json_is_array(parents) && !json_is_null(parents))
        return -EINVAL;
    n = json_is_array(parents) ? json_array_size(parents) : 0;
    for (i = 0; i < n; i++) {
        parent = parse_get_ident(json_array_get(parents, i), "hash");
        if (!api_is_full_hash(parent))
            return -EINVAL;
    }
    memcpy(out->hash, hash, API_HASH_LEN + 1);
    out->date = time_field(parse_get_ident(obj, "date"));
    if (n > 0) {
        out->parents = calloc(n, sizeof(*out->parents));
        if (!out->parents) {
            rc = -ENOMEM;
            goto out;
        }
        for (i = 0; i < n; i++)
            memcpy(out->parents[i], parse_get_string(json_array_get(parents, i), "hash"),
                   API_HASH_LEN + 1);
        out->parent_count = n;
    }
    rc = dup_or(&out->message, parse_get_string(obj, "message"), "");
    if (!rc)
        rc =
            dup_or(&out->html_url, get_ident2(json_object_get(obj, "links"), "html", "href"), NULL);
    if (!rc)
        rc = parse_doc(obj, &out->doc);
out:
    if (rc < 0)
        api_commit_release(out);
    return rc;
}

void parse_entry_release(struct api_entry *entry)
{
    if (!entry)
        return;
    free(entry->name);
    memset(entry, 0, sizeof(*entry));
}

/* Sets the flags named by one attribute string. */
static void entry_attribute(const char *attr, int *link, int *submodule, struct api_entry *out)
{
    if (strcmp(attr, "link") == 0)
        *link = 1;
    else if (strcmp(attr, "subrepository") == 0)
        *submodule = 1;
    else if (strcmp(attr, "executable") == 0)
        out->executable = 1;
    else if (strcmp(attr, "lfs") == 0)
        out->lfs = 1;
    /* "binary" and anything new: advisory, ignored */
}

int parse_entry(json_t *obj, const char *dir, struct api_entry *out)
{
    const char *path, *type, *name;
    json_t *attrs, *size;
    size_t i, dirlen;
    int link = 0, submodule = 0;

    memset(out, 0, sizeof(*out));
    path = parse_get_ident(obj, "path");
    type = parse_get_ident(obj, "type");
    if (!path || !type || !dir)
        return -EINVAL;
    dirlen = strlen(dir);
    name = path;
    if (dirlen > 0) {
        if (strncmp(path, dir, dirlen) != 0 || path[dirlen] != '/')
            return -EINVAL;
        name = path + dirlen + 1;
    }
    if (!*name || strchr(name, '/'))
        return -EINVAL;
    if (strcmp(type, "commit_directory") == 0) {
        out->type = API_ENTRY_DIR;
    } else if (strcmp(type, "commit_file") == 0) {
        attrs = json_object_get(obj, "attributes");
        if (json_is_string(attrs)) {
            entry_attribute(json_string_value(attrs), &link, &submodule, out);
        } else if (json_is_array(attrs)) {
            for (i = 0; i < json_array_size(attrs); i++) {
                if (json_is_string(json_array_get(attrs, i)))
                    entry_attribute(json_string_value(json_array_get(attrs, i)), &link, &submodule,
                                    out);
            }
        }
        out->type = link ? API_ENTRY_LINK : submodule ? API_ENTRY_SUBMODULE : API_ENTRY_FILE;
        size = json_object_get(obj, "size");
        if (json_is_integer(size) && json_integer_value(size) > 0)
            out->size = (uint64_t)json_integer_value(size);
    } else {
        return -EINVAL;
    }
    out->name = strdup(name);
    if (!out->name) {
        memset(out, 0, sizeof(*out));
        return -ENOMEM;
    }
    return 0;
}

int parse_error_message(const char *body, size_t len, char *dst, size_t dstlen)
{
    const char *message, *detail;
    json_error_t jerr;
    json_t *root, *error;
    struct {
        char message[512];
        char detail[512];
    } clean;
    int rc = -ENOENT;

    if (dstlen)
        dst[0] = '\0';
    if (!body || len == 0)
        return -ENOENT;
    root = json_loadb(body, len, PARSE_JSON_FLAGS, &jerr);
    if (!root)
        return -ENOENT;
    error = json_object_get(root, "error");
    message = parse_get_string(error, "message");
    detail = parse_get_string(error, "detail");
    if (!message || !*message)
        goto out;
    log_sanitize(clean.message, sizeof(clean.message), message);
    if (detail && *detail) {
        log_sanitize(clean.detail, sizeof(clean.detail), detail);
        snprintf(dst, dstlen, "%s: %s", clean.message, clean.detail);
    } else {
        snprintf(dst, dstlen, "%s", clean.message);
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}
