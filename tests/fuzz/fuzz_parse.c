/*
 * fuzz_parse.c - fuzz target for api/parse.h: Bitbucket JSON to structs.
 *
 * The first byte picks the parser (its value modulo 9; the seeds use the
 * letters shown), the rest is its input:
 *
 *   H parse_repo   I parse_ref   J parse_commit_summary   K parse_commit
 *   L parse_entry: "DIR\nJSON" (DIR is the listed directory, "" for the root)
 *   M parse_doc    N parse_time (a string)   O parse_error_message (a body)
 *   P parse_get_string / parse_get_ident of every key of an object
 *
 * A JSON input that is a page ({"values": [...]}) is parsed as a whole and
 * entry by entry, so the fixtures of tests/unit/fixtures/ make good seeds.
 * Beyond memory errors, the target checks what parse.h promises: a failed
 * parse leaves the struct zeroed, a successful one holds only usable values
 * (full hashes, names without '/', NUL-free strings, a document ending in a
 * newline), and parse_error_message's text is sanitised.
 *
 *   make fuzz                      # every target, FUZZ_SECONDS each
 *   build/fuzz/fuzz_parse -max_total_time=60 build/fuzz/corpus/fuzz_parse
 * tests/fuzz/corpus/fuzz_parse
 */
#include <jansson.h>
#include <string.h>

#include "api/api.h"
#include "api/parse.h"
#include "tests/fuzz/fuzz.h"

enum { P_REPO, P_REF, P_SUMMARY, P_COMMIT, P_ENTRY, P_DOC, P_TIME, P_ERROR, P_GET, P_COUNT };

static int is_zero(const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

static int is_full_hash(const char *s)
{
    size_t i;

    for (i = 0; i < API_HASH_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[i] == '\0';
}

static void check_doc(const struct api_doc *doc)
{
    fuzz_check(doc->text && doc->len > 0);
    fuzz_check(strlen(doc->text) == doc->len);
    fuzz_check(doc->text[doc->len - 1] == '\n');
}

static void one_repo(json_t *obj)
{
    struct api_repo r;

    if (parse_repo(obj, &r) < 0) {
        fuzz_check(is_zero(&r, sizeof(r)));
        return;
    }
    fuzz_check(r.slug && *r.slug && strcmp(r.slug, parse_get_string(obj, "slug")) == 0);
    fuzz_check(r.uuid && r.full_name && r.description);
    check_doc(&r.doc);
    parse_repo_release(&r);
    fuzz_check(is_zero(&r, sizeof(r)));
}

static void one_ref(json_t *obj)
{
    struct api_ref r;

    if (parse_ref(obj, &r) < 0) {
        fuzz_check(is_zero(&r, sizeof(r)));
        return;
    }
    fuzz_check(r.name && *r.name && is_full_hash(r.target));
    parse_ref_release(&r);
}

static void one_summary(json_t *obj)
{
    struct api_commit_summary s;

    if (parse_commit_summary(obj, &s) < 0) {
        fuzz_check(is_zero(&s, sizeof(s)));
        return;
    }
    fuzz_check(is_full_hash(s.hash));
}

static void one_commit(json_t *obj)
{
    struct api_commit c;
    size_t i;

    if (parse_commit(obj, &c) < 0) {
        fuzz_check(is_zero(&c, sizeof(c)));
        return;
    }
    fuzz_check(is_full_hash(c.hash) && c.message);
    fuzz_check(!c.parent_count == !c.parents);
    for (i = 0; i < c.parent_count; i++)
        fuzz_check(is_full_hash(c.parents[i]));
    check_doc(&c.doc);
    api_commit_release(&c);
}

static void one_entry(json_t *obj, const char *dir)
{
    struct api_entry e;

    if (parse_entry(obj, dir, &e) < 0) {
        fuzz_check(is_zero(&e, sizeof(e)));
        return;
    }
    fuzz_check(e.name && *e.name && !strchr(e.name, '/'));
    fuzz_check(e.type == API_ENTRY_FILE || e.type == API_ENTRY_DIR || e.type == API_ENTRY_LINK ||
               e.type == API_ENTRY_SUBMODULE);
    fuzz_check(e.type != API_ENTRY_DIR || e.size == 0);
    parse_entry_release(&e);
}

static void one_doc(json_t *obj)
{
    struct api_doc d;

    if (parse_doc(obj, &d) < 0) {
        fuzz_check(is_zero(&d, sizeof(d)));
        return;
    }
    check_doc(&d);
    api_doc_release(&d);
}

static void one_get(json_t *obj)
{
    const char *key, *s, *id;
    json_t *v;

    json_object_foreach(obj, key, v)
    {
        s = parse_get_string(obj, key);
        id = parse_get_ident(obj, key);
        fuzz_check(!!s == json_is_string(v));
        fuzz_check(!id || (s == id && strlen(id) == json_string_length(v)));
    }
    fuzz_check(!parse_get_string(NULL, "x") && !parse_get_ident(NULL, "x"));
}

static void one(int kind, json_t *obj, const char *dir)
{
    switch (kind) {
    case P_REPO:
        one_repo(obj);
        break;
    case P_REF:
        one_ref(obj);
        break;
    case P_SUMMARY:
        one_summary(obj);
        break;
    case P_COMMIT:
        one_commit(obj);
        break;
    case P_ENTRY:
        one_entry(obj, dir);
        break;
    case P_DOC:
        one_doc(obj);
        break;
    default:
        one_get(obj);
        break;
    }
}

static void run_json(int kind, const char *text, size_t len, const char *dir)
{
    json_error_t jerr;
    json_t *root, *values;
    size_t i;

    root = json_loadb(text, len, PARSE_JSON_FLAGS, &jerr);
    if (!root)
        return;
    one(kind, root, dir);
    values = json_object_get(root, "values");
    for (i = 0; i < json_array_size(values); i++)
        one(kind, json_array_get(values, i), dir);
    json_decref(root);
}

static void run_time(const char *s)
{
    int64_t t = 12345;

    if (parse_time(s, &t) < 0)
        fuzz_check(t == 12345); /* untouched on failure */
}

static void run_error(const char *body, size_t len)
{
    char dst[256];
    size_t i;

    memset(dst, 'x', sizeof(dst));
    if (parse_error_message(body, len, dst, sizeof(dst)) < 0) {
        fuzz_check(dst[0] == '\0');
        return;
    }
    fuzz_check(dst[0] != '\0' && memchr(dst, '\0', sizeof(dst)));
    for (i = 0; dst[i]; i++)
        fuzz_check((unsigned char)dst[i] >= 0x20 && dst[i] != 0x7f);
    fuzz_check(parse_error_message(body, len, dst, 1) == 0 && dst[0] == '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *rest, *nl;
    char *copy, *dir;
    size_t len;
    int kind;

    if (size == 0)
        return 0;
    kind = data[0] % P_COUNT;
    rest = (const char *)data + 1;
    len = size - 1;
    /* a NUL-terminated copy for the string parsers, exactly sized for ASan */
    copy = malloc(len + 1);
    if (!copy)
        return 0;
    memcpy(copy, rest, len);
    copy[len] = '\0';
    switch (kind) {
    case P_TIME:
        run_time(copy);
        break;
    case P_ERROR:
        run_error(rest, len);
        break;
    case P_ENTRY:
        nl = memchr(rest, '\n', len);
        if (!nl)
            break;
        dir = strndup(rest, (size_t)(nl - rest));
        if (dir)
            run_json(kind, nl + 1, len - (size_t)(nl - rest) - 1, dir);
        free(dir);
        break;
    default:
        run_json(kind, rest, len, NULL);
        break;
    }
    free(copy);
    return 0;
}
