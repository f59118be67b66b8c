/*
 * test_gitproto.c - git's wire protocol as bytes (api/pktline.c,
 * api/gitproto.c): pkt-line tables, answers captured from git's own
 * http-backend (fixtures/git/capture.sh) fed in every chunking, hostile and
 * truncated input, and the exact bytes of the requests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/gitproto.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZERO_OID "0000000000000000000000000000000000000000"

/* ---- helpers ---- */

/* A fixture of fixtures/git/ (tests run from the repository root), malloc'd. */
static char *load(const char *name, size_t *len)
{
    char path[512];
    const char *slash = strrchr(__FILE__, '/');
    int dirlen = slash ? (int)(slash - __FILE__) : 1;
    FILE *f;
    char *data;
    long n;

    snprintf(path, sizeof(path), "%.*s/fixtures/git/%s", dirlen, slash ? __FILE__ : ".", name);
    f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open fixture %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    data = malloc((size_t)n + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    data[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return data;
}

/* What git for-each-ref said when the fixtures were captured: OID of a ref, and its peeled. */
static void git_ref(const char *refname, char oid[41], char peeled[41])
{
    size_t len;
    char *text = load("refs.txt", &len), *line, *save = NULL;
    char o[41], name[256], p[41];
    int n;

    oid[0] = peeled[0] = '\0';
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        p[0] = '\0';
        n = sscanf(line, "%40s %255s %40s", o, name, p);
        if (n >= 2 && strcmp(name, refname) == 0) {
            strcpy(oid, o);
            strcpy(peeled, n == 3 ? p : "");
        }
    }
    free(text);
    if (!oid[0])
        fail_msg("no ref %s in refs.txt", refname);
}

/* Chunkings: whole, byte by byte, and in pieces of 2, 3, 7 and 4096 bytes. */
static const size_t chunkings[] = {0, 1, 2, 3, 7, 4096};
#define NCHUNKINGS (sizeof(chunkings) / sizeof(chunkings[0]))

/*
 * Builds the bytes of a list of packets: FLUSH, DELIM and END are those
 * packets, "RAW:..." is appended as it is, anything else is one data
 * packet in which '@' stands for a NUL. The list ends with NULL.
 */
#define FLUSH "\x01F"
#define DELIM "\x01D"
#define END "\x01E"
static char *build(const char *const *pkts, size_t *len)
{
    struct buf b;
    char payload[512];
    size_t i, n, k;
    char *out;

    buf_init(&b, (size_t)64 << 20);
    for (i = 0; pkts[i]; i++) {
        if (strcmp(pkts[i], FLUSH) == 0) {
            pkt_append_flush(&b);
        } else if (strcmp(pkts[i], DELIM) == 0) {
            pkt_append_delim(&b);
        } else if (strcmp(pkts[i], END) == 0) {
            buf_append(&b, "0002", 4);
        } else if (strncmp(pkts[i], "RAW:", 4) == 0) {
            buf_appends(&b, pkts[i] + 4);
        } else {
            n = strlen(pkts[i]);
            assert_true(n < sizeof(payload));
            for (k = 0; k < n; k++)
                payload[k] = pkts[i][k] == '@' ? '\0' : pkts[i][k];
            pkt_append(&b, payload, n);
        }
    }
    out = buf_take(&b, len);
    assert_non_null(out);
    return out;
}

/* ---- pkt-lines ---- */

struct decoded {
    int err;
    size_t count;
    enum pkt_type types[8];
    char payloads[8][64];
    size_t lens[8];
    int idle;
};

static void decode_all(const char *in, size_t len, size_t chunk, struct decoded *out)
{
    struct pkt_decoder *d = malloc(sizeof(*d));
    struct pkt pkt;
    size_t off = 0, n, left;
    const char *p;
    int rc;

    assert_non_null(d);
    memset(out, 0, sizeof(*out));
    pkt_decoder_init(d);
    while (off < len && !out->err) {
        n = chunk == 0 || chunk > len - off ? len - off : chunk;
        p = in + off;
        left = n;
        while (left > 0) {
            rc = pkt_decode(d, &p, &left, &pkt);
            if (rc < 0) {
                out->err = rc;
                break;
            }
            if (rc == 0) {
                assert_int_equal(left, 0);
                break;
            }
            assert_true(out->count < 8);
            out->types[out->count] = pkt.type;
            out->lens[out->count] = pkt.len;
            if (pkt.type == PKT_DATA) {
                assert_int_equal(pkt.data[pkt.len], '\0');
                memcpy(out->payloads[out->count], pkt.data, pkt.len < 63 ? pkt.len : 63);
            }
            out->count++;
        }
        off += n;
    }
    out->idle = pkt_decoder_idle(d);
    free(d);
}

static void test_pkt_decode_table(void **state)
{
    static const struct {
        const char *in;
        size_t len; /* 0: strlen */
        int err;
        size_t count;
        enum pkt_type types[3];
        const char *payloads[3];
        int idle;
    } cases[] = {
        {"0000", 0, 0, 1, {PKT_FLUSH}, {NULL}, 1},
        {"0001", 0, 0, 1, {PKT_DELIM}, {NULL}, 1},
        {"0002", 0, 0, 1, {PKT_RESPONSE_END}, {NULL}, 1},
        {"0004", 0, 0, 1, {PKT_DATA}, {""}, 1},
        {"0009hello", 0, 0, 1, {PKT_DATA}, {"hello"}, 1},
        {"000ahello\n0000", 0, 0, 2, {PKT_DATA, PKT_FLUSH}, {"hello\n", NULL}, 1},
        {"0006a\n0001000ab c d\n",
         0,
         0,
         3,
         {PKT_DATA, PKT_DELIM, PKT_DATA},
         {"a\n", NULL, "b c d\n"},
         1},
        {"000Ahello\n", 0, 0, 1, {PKT_DATA}, {"hello\n"}, 1}, /* git reads either case */
        {"0008\0\1\2\3", 8, 0, 1, {PKT_DATA}, {"\0\1\2\3"}, 1},
        {"0009hel", 0, 0, 0, {PKT_DATA}, {NULL}, 0},    /* truncated: nothing yet */
        {"000", 0, 0, 0, {PKT_DATA}, {NULL}, 0},        /* a head cut short */
        {"0003", 0, -EPROTO, 0, {PKT_DATA}, {NULL}, 1}, /* no such length */
        {"00zz", 0, -EPROTO, 0, {PKT_DATA}, {NULL}, 1},
        {"-001", 0, -EPROTO, 0, {PKT_DATA}, {NULL}, 1},
        {" 004", 0, -EPROTO, 0, {PKT_DATA}, {NULL}, 1},
        {"fff1", 0, -EPROTO, 0, {PKT_DATA}, {NULL}, 1}, /* over 65520 */
        {"ffff", 0, -EPROTO, 0, {PKT_DATA}, {NULL}, 1},
        {"0000zzzz", 0, -EPROTO, 1, {PKT_FLUSH}, {NULL}, 1},
    };
    struct decoded out;
    size_t i, c, k, len;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = cases[i].len ? cases[i].len : strlen(cases[i].in);
        for (c = 0; c < NCHUNKINGS; c++) {
            decode_all(cases[i].in, len, chunkings[c], &out);
            if (out.err != cases[i].err || out.count != cases[i].count)
                fail_msg("case %zu chunk %zu: err %d count %zu", i, chunkings[c], out.err,
                         out.count);
            for (k = 0; k < out.count; k++) {
                assert_int_equal(out.types[k], cases[i].types[k]);
                if (cases[i].payloads[k]) {
                    assert_int_equal(out.lens[k], cases[i].len ? 4 : strlen(cases[i].payloads[k]));
                    assert_memory_equal(out.payloads[k], cases[i].payloads[k], out.lens[k]);
                }
            }
            if (!cases[i].err)
                assert_int_equal(out.idle, cases[i].idle);
        }
    }
}

/* The biggest packet there is, then a flush, in awkward chunks. */
static void test_pkt_decode_largest(void **state)
{
    struct pkt_decoder *d = malloc(sizeof(*d));
    size_t len = PKT_MAX + 4, off, n, left, got = 0;
    char *in = malloc(len);
    struct pkt pkt;
    const char *p;
    int rc, flushed = 0;

    (void)state;
    assert_non_null(d);
    assert_non_null(in);
    memcpy(in, "fff0", 4);
    for (off = 4; off < PKT_MAX; off++)
        in[off] = (char)(off * 7);
    memcpy(in + PKT_MAX, "0000", 4);
    pkt_decoder_init(d);
    for (off = 0; off < len; off += n) {
        n = 1000 < len - off ? 1000 : len - off;
        p = in + off;
        left = n;
        while (left > 0 && (rc = pkt_decode(d, &p, &left, &pkt)) != 0) {
            assert_int_equal(rc, 1);
            if (pkt.type == PKT_DATA) {
                assert_int_equal(pkt.len, PKT_DATA_MAX);
                assert_memory_equal(pkt.data, in + 4, pkt.len);
                got++;
            } else {
                assert_int_equal(pkt.type, PKT_FLUSH);
                flushed++;
            }
        }
    }
    assert_int_equal(got, 1);
    assert_int_equal(flushed, 1);
    free(in);
    free(d);
}

static void test_pkt_encode(void **state)
{
    struct buf b;
    char *big = malloc(PKT_DATA_MAX + 1);
    char *out;
    size_t len;

    (void)state;
    assert_non_null(big);
    memset(big, 'x', PKT_DATA_MAX + 1);
    buf_init(&b, 1 << 20);
    assert_int_equal(pkt_append_str(&b, "hello\n"), 0);
    assert_int_equal(pkt_append_delim(&b), 0);
    assert_int_equal(pkt_append(&b, "\0\1", 2), 0);
    assert_int_equal(pkt_append_flush(&b), 0);
    out = buf_take(&b, &len);
    assert_int_equal(len, 24);
    assert_memory_equal(out,
                        "000ahello\n00010006\0\1"
                        "0000",
                        24);
    free(out);

    buf_init(&b, 1 << 20);
    assert_int_equal(pkt_append(&b, big, PKT_DATA_MAX), 0);
    out = buf_take(&b, &len);
    assert_int_equal(len, PKT_MAX);
    assert_memory_equal(out, "fff0", 4);
    free(out);

    buf_init(&b, 1 << 20);
    assert_int_equal(pkt_append(&b, big, PKT_DATA_MAX + 1), -EINVAL);
    assert_int_equal(pkt_append_str(&b, "later"), -EINVAL); /* the failure sticks */
    buf_release(&b);
    buf_init(&b, 1 << 20);
    assert_int_equal(pkt_append(&b, "", 0), -EINVAL);
    buf_release(&b);
    free(big);
}

/* ---- advertisements and ls-refs ---- */

static int parse_list(enum gitproto_list_kind kind, const char *in, size_t len, size_t chunk,
                      struct gitproto_adv *adv, char *message)
{
    struct gitproto_list_parser *p = malloc(sizeof(*p));
    size_t off, n;
    int rc = 0;

    assert_non_null(p);
    memset(adv, 0, sizeof(*adv));
    gitproto_list_init(p, kind, adv);
    for (off = 0; off < len && rc == 0; off += n) {
        n = chunk == 0 || chunk > len - off ? len - off : chunk;
        rc = gitproto_list_feed(p, in + off, n);
    }
    if (rc == 0)
        rc = gitproto_list_finish(p);
    if (message)
        strcpy(message, p->message);
    free(p);
    return rc;
}

/* The refs of the captured repository, as git for-each-ref named them. */
static void check_captured_refs(const struct gitproto_adv *adv)
{
    static const char *const names[] = {"refs/heads/feature/x", "refs/heads/main", "refs/tags/v1",
                                        "refs/tags/v2"};
    const struct gitproto_ref *r;
    char oid[41], peeled[41], main_oid[41];
    size_t i;

    assert_int_equal(adv->refs.count, 5);
    for (i = 0; i < 4; i++) {
        git_ref(names[i], oid, peeled);
        r = gitproto_refs_find(&adv->refs, names[i]);
        assert_non_null(r);
        assert_string_equal(r->oid, oid);
        assert_string_equal(r->peeled, peeled);
        assert_null(r->symref);
    }
    git_ref("refs/tags/v1", oid, peeled);
    assert_true(peeled[0] != '\0'); /* an annotated tag */
    git_ref("refs/heads/main", main_oid, peeled);
    r = gitproto_refs_find(&adv->refs, "HEAD");
    assert_non_null(r);
    assert_string_equal(r->oid, main_oid);
    assert_string_equal(r->symref, "refs/heads/main");
}

static void test_captured_v0_advertisement(void **state)
{
    struct gitproto_adv adv;
    size_t len, c;
    char *in = load("adv-v0.bin", &len);
    unsigned want = GITPROTO_CAP_SHALLOW | GITPROTO_CAP_SIDE_BAND_64K | GITPROTO_CAP_OFS_DELTA |
                    GITPROTO_CAP_NO_PROGRESS | GITPROTO_CAP_AGENT | GITPROTO_CAP_OBJECT_FORMAT;

    (void)state;
    for (c = 0; c < NCHUNKINGS; c++) {
        assert_int_equal(parse_list(GITPROTO_DISCOVERY, in, len, chunkings[c], &adv, NULL), 0);
        assert_int_equal(adv.version, 0);
        assert_int_equal(adv.caps, want);
        check_captured_refs(&adv);
        gitproto_adv_release(&adv);
    }
    /* every cut short of the end is an incomplete answer */
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_equal(parse_list(GITPROTO_DISCOVERY, in, cut, 0, &adv, NULL), -EPROTO);
        gitproto_adv_release(&adv);
    }
    free(in);
}

static void test_captured_v2_advertisement(void **state)
{
    struct gitproto_adv adv;
    size_t len, c;
    char *in = load("adv-v2.bin", &len);
    unsigned want = GITPROTO_CAP_SHALLOW | GITPROTO_CAP_SIDE_BAND_64K | GITPROTO_CAP_OFS_DELTA |
                    GITPROTO_CAP_NO_PROGRESS | GITPROTO_CAP_LS_REFS | GITPROTO_CAP_FETCH |
                    GITPROTO_CAP_AGENT | GITPROTO_CAP_OBJECT_FORMAT;

    (void)state;
    for (c = 0; c < NCHUNKINGS; c++) {
        assert_int_equal(parse_list(GITPROTO_DISCOVERY, in, len, chunkings[c], &adv, NULL), 0);
        assert_int_equal(adv.version, 2);
        assert_int_equal(adv.caps, want);
        assert_int_equal(adv.refs.count, 0);
        gitproto_adv_release(&adv);
    }
    free(in);
}

static void test_captured_ls_refs(void **state)
{
    struct gitproto_adv adv;
    size_t len, c, cut;
    char *in = load("ls-refs-v2.bin", &len);

    (void)state;
    for (c = 0; c < NCHUNKINGS; c++) {
        assert_int_equal(parse_list(GITPROTO_LS_REFS, in, len, chunkings[c], &adv, NULL), 0);
        check_captured_refs(&adv);
        gitproto_adv_release(&adv);
    }
    for (cut = 0; cut < len; cut++) {
        assert_int_equal(parse_list(GITPROTO_LS_REFS, in, cut, 3, &adv, NULL), -EPROTO);
        gitproto_adv_release(&adv);
    }
    free(in);
}

#define A_OID "1111111111111111111111111111111111111111"
#define B_OID "2222222222222222222222222222222222222222"

static void test_list_table(void **state)
{
    static const struct {
        const char *name;
        enum gitproto_list_kind kind;
        const char *pkts[10];
        int rc;
        int version;
        size_t refs;
        unsigned caps; /* checked when not 0 */
    } cases[] = {
        {"v0 without service line",
         GITPROTO_DISCOVERY,
         {A_OID " HEAD@shallow side-band-64k\n", A_OID " refs/heads/main\n", FLUSH},
         0,
         0,
         2,
         GITPROTO_CAP_SHALLOW | GITPROTO_CAP_SIDE_BAND_64K},
        {"newlines are optional",
         GITPROTO_DISCOVERY,
         {A_OID " HEAD@shallow", A_OID " refs/heads/main", FLUSH},
         0,
         0,
         2,
         GITPROTO_CAP_SHALLOW},
        {"v1 line",
         GITPROTO_DISCOVERY,
         {"version 1\n", A_OID " HEAD@shallow\n", FLUSH},
         0,
         0,
         1,
         GITPROTO_CAP_SHALLOW},
        {"empty repository",
         GITPROTO_DISCOVERY,
         {"# service=git-upload-pack\n", FLUSH, ZERO_OID " capabilities^{}@shallow side-band-64k\n",
          FLUSH},
         0,
         0,
         0,
         GITPROTO_CAP_SHALLOW | GITPROTO_CAP_SIDE_BAND_64K},
        {"no refs at all",
         GITPROTO_DISCOVERY,
         {"# service=git-upload-pack\n", FLUSH, FLUSH},
         0,
         0,
         0,
         0},
        {"other refs skipped, stray peel ignored, shallow line",
         GITPROTO_DISCOVERY,
         {A_OID " HEAD@shallow\n", A_OID " refs/pull-requests/1/from\n", A_OID " refs/notes/x^{}\n",
          "shallow " B_OID "\n", B_OID " refs/tags/v1\n", A_OID " refs/tags/v1^{}\n", FLUSH},
         0,
         0,
         2,
         0},
        {"symref to a hostile name",
         GITPROTO_DISCOVERY,
         {A_OID " HEAD@symref=HEAD:refs/heads/../x\n", FLUSH},
         0,
         0,
         1,
         0},
        {"sha256",
         GITPROTO_DISCOVERY,
         {A_OID " HEAD@object-format=sha256 shallow\n", FLUSH},
         0,
         0,
         1,
         GITPROTO_CAP_SHA256 | GITPROTO_CAP_SHALLOW},
        {"v2 capabilities",
         GITPROTO_DISCOVERY,
         {"version 2\n", "ls-refs\n", "fetch\n", "object-format=sha1\n", FLUSH},
         0,
         2,
         0,
         GITPROTO_CAP_LS_REFS | GITPROTO_CAP_FETCH | GITPROTO_CAP_SIDE_BAND_64K |
             GITPROTO_CAP_OFS_DELTA | GITPROTO_CAP_NO_PROGRESS | GITPROTO_CAP_OBJECT_FORMAT},
        {"v2 after a service line",
         GITPROTO_DISCOVERY,
         {"# service=git-upload-pack\n", FLUSH, "version 2\n", "fetch=shallow filter\n", FLUSH},
         0,
         2,
         0,
         GITPROTO_CAP_FETCH | GITPROTO_CAP_SHALLOW | GITPROTO_CAP_SIDE_BAND_64K |
             GITPROTO_CAP_OFS_DELTA | GITPROTO_CAP_NO_PROGRESS},
        {"ERR", GITPROTO_DISCOVERY, {"ERR access denied\n"}, -EREMOTEIO, 0, 0, 0},
        {"ERR after refs",
         GITPROTO_DISCOVERY,
         {A_OID " HEAD@shallow\n", "ERR x\n"},
         -EREMOTEIO,
         0,
         0,
         0},
        {"delimiter in v0", GITPROTO_DISCOVERY, {A_OID " HEAD@shallow\n", DELIM}, -EPROTO, 0, 0, 0},
        {"response end in v0",
         GITPROTO_DISCOVERY,
         {A_OID " HEAD@shallow\n", END},
         -EPROTO,
         0,
         0,
         0},
        {"bytes after the end",
         GITPROTO_DISCOVERY,
         {A_OID " HEAD@shallow\n", FLUSH, FLUSH},
         -EPROTO,
         0,
         0,
         0},
        {"short object name", GITPROTO_DISCOVERY, {"1111 HEAD@shallow\n", FLUSH}, -EPROTO, 0, 0, 0},
        {"uppercase object name",
         GITPROTO_DISCOVERY,
         {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA HEAD\n", FLUSH},
         -EPROTO,
         0,
         0,
         0},
        {"no space after the object name",
         GITPROTO_DISCOVERY,
         {A_OID "HEAD\n", FLUSH},
         -EPROTO,
         0,
         0,
         0},
        {"NUL in a later ref",
         GITPROTO_DISCOVERY,
         {A_OID " HEAD@shallow\n", A_OID " refs/tags/a@b\n", FLUSH},
         -EPROTO,
         0,
         0,
         0},
        {"an empty packet",
         GITPROTO_DISCOVERY,
         {A_OID " HEAD@shallow\n", "RAW:0004", FLUSH},
         -EPROTO,
         0,
         0,
         0},
        {"service line without its flush",
         GITPROTO_DISCOVERY,
         {"# service=git-upload-pack\n", "version 2\n"},
         -EPROTO,
         0,
         0,
         0},
        {"v2 capabilities never end",
         GITPROTO_DISCOVERY,
         {"version 2\n", "fetch\n"},
         -EPROTO,
         0,
         0,
         0},
        {"ls-refs with symref and peel",
         GITPROTO_LS_REFS,
         {A_OID " HEAD symref-target:refs/heads/main\n", A_OID " refs/heads/main\n",
          B_OID " refs/tags/v1 peeled:" A_OID "\n", "unborn refs/heads/other\n", FLUSH},
         0,
         0,
         3,
         0},
        {"ls-refs with unknown attributes",
         GITPROTO_LS_REFS,
         {B_OID " refs/tags/v1 color:blue peeled:" A_OID "\n", FLUSH},
         0,
         0,
         1,
         0},
        {"ls-refs with a broken peel",
         GITPROTO_LS_REFS,
         {B_OID " refs/tags/v1 peeled:ZZ22222222222222222222222222222222222222\n", FLUSH},
         -EPROTO,
         0,
         0,
         0},
        {"ls-refs without a name", GITPROTO_LS_REFS, {A_OID " \n", FLUSH}, -EPROTO, 0, 0, 0},
        {"ls-refs with a NUL",
         GITPROTO_LS_REFS,
         {A_OID " refs/heads/a@b\n", FLUSH},
         -EPROTO,
         0,
         0,
         0},
        {"ls-refs ends early", GITPROTO_LS_REFS, {A_OID " refs/heads/main\n"}, -EPROTO, 0, 0, 0},
        {"ls-refs ERR", GITPROTO_LS_REFS, {"ERR no\n"}, -EREMOTEIO, 0, 0, 0},
    };
    struct gitproto_adv adv;
    size_t i, c, len;
    char *in;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        in = build(cases[i].pkts, &len);
        for (c = 0; c < NCHUNKINGS; c++) {
            rc = parse_list(cases[i].kind, in, len, chunkings[c], &adv, NULL);
            if (rc != cases[i].rc)
                fail_msg("%s (chunk %zu): %d, not %d", cases[i].name, chunkings[c], rc,
                         cases[i].rc);
            if (rc == 0) {
                assert_int_equal(adv.version, cases[i].version);
                assert_int_equal(adv.refs.count, cases[i].refs);
                if (cases[i].caps)
                    assert_int_equal(adv.caps, cases[i].caps);
            }
            gitproto_adv_release(&adv);
        }
        free(in);
    }
}

static void test_list_details(void **state)
{
    static const char *const refs[] = {A_OID " HEAD@shallow symref=HEAD:refs/heads/x y\n",
                                       B_OID " refs/tags/v1\n",
                                       A_OID " refs/tags/v1^{}\n",
                                       A_OID " refs/heads/x y\n",
                                       FLUSH,
                                       NULL};
    static const char *const err[] = {"ERR no access\x1b[31m to\tit\n", NULL};
    const struct gitproto_ref *r;
    struct gitproto_adv adv;
    char message[GITPROTO_MESSAGE_MAX], *in;
    size_t len;

    (void)state;
    in = build(refs, &len);
    assert_int_equal(parse_list(GITPROTO_DISCOVERY, in, len, 0, &adv, NULL), 0);
    r = gitproto_refs_find(&adv.refs, "refs/tags/v1");
    assert_non_null(r);
    assert_string_equal(r->oid, B_OID);
    assert_string_equal(r->peeled, A_OID);
    assert_null(gitproto_refs_find(&adv.refs, "refs/tags/v1^{}"));
    /* a capability is one word: the symref names refs/heads/x, and "y" is another word */
    r = gitproto_refs_find(&adv.refs, "HEAD");
    assert_non_null(r);
    assert_string_equal(r->symref, "refs/heads/x");
    assert_non_null(gitproto_refs_find(&adv.refs, "refs/heads/x y"));
    gitproto_adv_release(&adv);
    free(in);

    /* the server's words, with its control characters made harmless */
    in = build(err, &len);
    assert_int_equal(parse_list(GITPROTO_DISCOVERY, in, len, 0, &adv, message), -EREMOTEIO);
    assert_string_equal(message, "no access?[31m to?it");
    gitproto_adv_release(&adv);
    free(in);
}

static void test_too_many_refs(void **state)
{
    struct buf b;
    char line[128], *in;
    size_t len, i;
    struct gitproto_adv adv;

    (void)state;
    buf_init(&b, (size_t)64 << 20);
    pkt_append(&b, A_OID " HEAD\0shallow\n", 49 - 4);
    for (i = 0; i < GITPROTO_MAX_REFS; i++) {
        snprintf(line, sizeof(line), A_OID " refs/tags/t%zu\n", i);
        pkt_append_str(&b, line);
    }
    pkt_append_flush(&b);
    in = buf_take(&b, &len);
    assert_non_null(in);
    assert_int_equal(parse_list(GITPROTO_DISCOVERY, in, len, 65536, &adv, NULL), -EFBIG);
    assert_true(adv.refs.count <= GITPROTO_MAX_REFS);
    gitproto_adv_release(&adv);
    free(in);
}

/* ---- the fetch answer ---- */

struct sink {
    char *data;
    size_t len, cap;
    int fail_with; /* returned once data holds more than fail_after bytes */
    size_t fail_after;
    unsigned calls;
};

static int sink_pack(void *ctx, const char *data, size_t len)
{
    struct sink *s = ctx;

    s->calls++;
    assert_true(len > 0);
    if (s->fail_with && s->len + len > s->fail_after)
        return s->fail_with;
    if (s->len + len > s->cap) {
        s->cap = (s->len + len) * 2;
        s->data = realloc(s->data, s->cap);
        assert_non_null(s->data);
    }
    memcpy(s->data + s->len, data, len);
    s->len += len;
    return 0;
}

static int parse_fetch(int version, const char *in, size_t len, size_t chunk, struct sink *s,
                       char *message)
{
    struct gitproto_fetch_parser *p = malloc(sizeof(*p));
    size_t off, n;
    int rc = 0;

    assert_non_null(p);
    gitproto_fetch_init(p, version, sink_pack, s);
    for (off = 0; off < len && rc == 0; off += n) {
        n = chunk == 0 || chunk > len - off ? len - off : chunk;
        rc = gitproto_fetch_feed(p, in + off, n);
    }
    if (rc == 0)
        rc = gitproto_fetch_finish(p);
    if (rc == 0)
        assert_int_equal(p->pack_bytes, s->len);
    if (message)
        strcpy(message, p->message);
    free(p);
    return rc;
}

/* A pack as git writes it: "PACK", version 2, and a SHA-1 of everything before its trailer. */
static void check_pack(const struct sink *s)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    assert_true(s->len > 12 + 20);
    assert_memory_equal(s->data, "PACK\0\0\0\2", 8);
    assert_int_equal(EVP_Digest(s->data, s->len - 20, md, &mdlen, EVP_sha1(), NULL), 1);
    assert_int_equal(mdlen, 20);
    assert_memory_equal(md, s->data + s->len - 20, 20);
}

static void captured_fetch(const char *fixture, int version)
{
    struct sink s;
    size_t len, c, cut;
    char *in = load(fixture, &len);

    for (c = 0; c < NCHUNKINGS; c++) {
        memset(&s, 0, sizeof(s));
        assert_int_equal(parse_fetch(version, in, len, chunkings[c], &s, NULL), 0);
        check_pack(&s);
        free(s.data);
    }
    /* a split at every byte, and every answer cut short */
    for (cut = 0; cut < len; cut++) {
        memset(&s, 0, sizeof(s));
        struct gitproto_fetch_parser *p = malloc(sizeof(*p));
        assert_non_null(p);
        gitproto_fetch_init(p, version, sink_pack, &s);
        assert_int_equal(gitproto_fetch_feed(p, in, cut), 0);
        assert_int_equal(gitproto_fetch_finish(p), -EPROTO);
        assert_int_equal(gitproto_fetch_feed(p, in + cut, len - cut), 0);
        assert_int_equal(gitproto_fetch_finish(p), 0);
        check_pack(&s);
        free(p);
        free(s.data);
    }
    free(in);
}

static void test_captured_fetch_v2(void **state)
{
    (void)state;
    captured_fetch("fetch-v2.bin", 2);
}

static void test_captured_fetch_v0(void **state)
{
    (void)state;
    captured_fetch("fetch-v0.bin", 0);
}

static void test_captured_refusal(void **state)
{
    struct sink s = {0};
    size_t len;
    char *in = load("err-v0.bin", &len);
    char message[GITPROTO_MESSAGE_MAX];

    (void)state;
    assert_int_equal(parse_fetch(0, in, len, 5, &s, message), -EREMOTEIO);
    assert_string_equal(message,
                        "upload-pack: not our ref 0123456789012345678901234567890123456789");
    assert_int_equal(s.len, 0);
    free(in);
}

static void test_fetch_table(void **state)
{
    static const struct {
        const char *name;
        int version;
        const char *pkts[10];
        int rc;
        const char *pack; /* the bytes of band 1 */
        const char *message;
    } cases[] = {
        {"v0 minimal", 0, {FLUSH, "NAK\n", "\1PACK", FLUSH}, 0, "PACK", ""},
        {"v0 keep-alives and progress",
         0,
         {"shallow " A_OID "\n", FLUSH, "NAK\n", "RAW:0005\1", "\2counting", "\1ab", "\1cde",
          FLUSH},
         0,
         "abcde",
         ""},
        {"v0 without a shallow list", 0, {"NAK\n", "\1ab", FLUSH}, 0, "ab", ""},
        {"v0 unshallow", 0, {"unshallow " A_OID "\n", FLUSH, "NAK\n", "\1ab", FLUSH}, 0, "ab", ""},
        {"v0 ACK", 0, {FLUSH, "ACK " A_OID "\n", "\1ab", FLUSH}, 0, "ab", ""},
        {"v0 ACK continue",
         0,
         {FLUSH, "ACK " A_OID " continue\n", "NAK\n", "\1ab", FLUSH},
         0,
         "ab",
         ""},
        {"v0 band 3",
         0,
         {FLUSH, "NAK\n", "\1ab", "\3disk is full\n"},
         -EREMOTEIO,
         NULL,
         "disk is full"},
        {"v0 band 4", 0, {FLUSH, "NAK\n", "\4ab", FLUSH}, -EPROTO, NULL, ""},
        {"v0 empty side-band packet", 0, {FLUSH, "NAK\n", "RAW:0004", FLUSH}, -EPROTO, NULL, ""},
        {"v0 ERR before the pack", 0, {FLUSH, "ERR gone\n"}, -EREMOTEIO, NULL, "gone"},
        {"v0 ERR in the pack", 0, {FLUSH, "NAK\n", "\1ab", "ERR gone\n"}, -EREMOTEIO, NULL, "gone"},
        {"v0 garbage instead of NAK", 0, {FLUSH, "NAX\n"}, -EPROTO, NULL, ""},
        {"v0 delimiter", 0, {DELIM}, -EPROTO, NULL, ""},
        {"v0 flush after the shallow list's flush", 0, {FLUSH, FLUSH}, -EPROTO, NULL, ""},
        {"v0 bytes after the end", 0, {FLUSH, "NAK\n", "\1ab", FLUSH, FLUSH}, -EPROTO, NULL, ""},
        {"v0 cut in the pack", 0, {FLUSH, "NAK\n", "\1ab"}, -EPROTO, NULL, ""},
        {"v0 cut in a packet", 0, {FLUSH, "NAK\n", "RAW:0009\1ab"}, -EPROTO, NULL, ""},
        {"v2 with sections",
         2,
         {"shallow-info\n", "shallow " A_OID "\n", DELIM, "packfile\n", "\1ab", "\1cd", FLUSH},
         0,
         "abcd",
         ""},
        {"v2 response-end after the flush", 2, {"packfile\n", "\1ab", FLUSH, END}, 0, "ab", ""},
        {"v2 acknowledgments then pack",
         2,
         {"acknowledgments\n", "NAK\n", "ready\n", DELIM, "packfile\n", "\1ab", FLUSH},
         0,
         "ab",
         ""},
        {"v2 no pack", 2, {"acknowledgments\n", "NAK\n", FLUSH}, -EPROTO, NULL, ""},
        {"v2 unknown section", 2, {"mystery\n", FLUSH}, -EPROTO, NULL, ""},
        {"v2 flush instead of a section", 2, {FLUSH}, -EPROTO, NULL, ""},
        {"v2 ERR", 2, {"shallow-info\n", "ERR nope\n"}, -EREMOTEIO, NULL, "nope"},
        {"v2 band 3", 2, {"packfile\n", "\3bad\n"}, -EREMOTEIO, NULL, "bad"},
        {"v2 bad length", 2, {"packfile\n", "RAW:zzzz"}, -EPROTO, NULL, ""},
        {"v2 length over the maximum", 2, {"packfile\n", "RAW:fff1"}, -EPROTO, NULL, ""},
    };
    struct sink s;
    char message[GITPROTO_MESSAGE_MAX], *in;
    size_t i, c, len;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        in = build(cases[i].pkts, &len);
        for (c = 0; c < NCHUNKINGS; c++) {
            memset(&s, 0, sizeof(s));
            rc = parse_fetch(cases[i].version, in, len, chunkings[c], &s, message);
            if (rc != cases[i].rc)
                fail_msg("%s (chunk %zu): %d, not %d", cases[i].name, chunkings[c], rc,
                         cases[i].rc);
            if (cases[i].pack) {
                assert_int_equal(s.len, strlen(cases[i].pack));
                assert_memory_equal(s.data, cases[i].pack, s.len);
            }
            assert_string_equal(message, cases[i].message);
            free(s.data);
        }
        free(in);
    }
}

/* The pack callback's refusal (a full disk, the cap) stops the parse with its errno. */
static void test_fetch_sink_refuses(void **state)
{
    static const char *const pkts[] = {FLUSH, "NAK\n", "\1ab", "\1cd", FLUSH, NULL};
    struct sink s = {.fail_with = -EFBIG, .fail_after = 3};
    size_t len;
    char *in = build(pkts, &len);

    (void)state;
    assert_int_equal(parse_fetch(0, in, len, 0, &s, NULL), -EFBIG);
    free(in);
    assert_int_equal(s.len, 2);
    assert_int_equal(s.calls, 2);
    free(s.data);
}

/* ---- requests ---- */

static char *request(int kind, int version, unsigned caps, const char *agent, const char *want,
                     int *rc)
{
    struct buf b;
    char *out;

    buf_init(&b, 1 << 20);
    *rc = kind == 0 ? gitproto_fetch_request(&b, version, caps, agent, want)
                    : gitproto_ls_refs_request(&b, caps, agent);
    out = *rc == 0 ? buf_take(&b, NULL) : NULL;
    buf_release(&b);
    return out;
}

static void test_requests(void **state)
{
    static const unsigned v0_all = GITPROTO_CAP_SHALLOW | GITPROTO_CAP_SIDE_BAND_64K |
                                   GITPROTO_CAP_OFS_DELTA | GITPROTO_CAP_NO_PROGRESS |
                                   GITPROTO_CAP_AGENT;
    static const unsigned v2_all = GITPROTO_CAP_SHALLOW | GITPROTO_CAP_SIDE_BAND_64K |
                                   GITPROTO_CAP_OFS_DELTA | GITPROTO_CAP_NO_PROGRESS |
                                   GITPROTO_CAP_LS_REFS | GITPROTO_CAP_FETCH | GITPROTO_CAP_AGENT |
                                   GITPROTO_CAP_OBJECT_FORMAT;
    static const struct {
        const char *name;
        int kind; /* 0 fetch, 1 ls-refs */
        int version;
        unsigned caps;
        const char *agent, *want;
        int rc;
        const char *pkts[12];
    } cases[] = {
        {"v0 fetch",
         0,
         0,
         v0_all,
         "bbfs/1",
         A_OID,
         0,
         {"want " A_OID " side-band-64k ofs-delta no-progress shallow agent=bbfs/1\n", "deepen 1\n",
          FLUSH, "done\n"}},
        {"v0 fetch, fewest caps",
         0,
         0,
         GITPROTO_CAP_SHALLOW | GITPROTO_CAP_SIDE_BAND_64K,
         "bbfs/1",
         A_OID,
         0,
         {"want " A_OID " side-band-64k shallow\n", "deepen 1\n", FLUSH, "done\n"}},
        {"v0 fetch, an agent with a space is not sent",
         0,
         0,
         v0_all,
         "bbfs 1",
         A_OID,
         0,
         {"want " A_OID " side-band-64k ofs-delta no-progress shallow\n", "deepen 1\n", FLUSH,
          "done\n"}},
        {"v0 without shallow", 0, 0, GITPROTO_CAP_SIDE_BAND_64K, NULL, A_OID, -ENOTSUP, {NULL}},
        {"v0 without side-band-64k", 0, 0, GITPROTO_CAP_SHALLOW, NULL, A_OID, -ENOTSUP, {NULL}},
        {"v0 sha256", 0, 0, v0_all | GITPROTO_CAP_SHA256, NULL, A_OID, -ENOTSUP, {NULL}},
        {"bad want", 0, 0, v0_all, NULL, "HEAD", -EINVAL, {NULL}},
        {"uppercase want",
         0,
         2,
         v2_all,
         NULL,
         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
         -EINVAL,
         {NULL}},
        {"v2 fetch",
         0,
         2,
         v2_all,
         "bbfs/1",
         A_OID,
         0,
         {"command=fetch\n", "agent=bbfs/1\n", "object-format=sha1\n", DELIM, "no-progress\n",
          "ofs-delta\n", "deepen 1\n", "want " A_OID "\n", "done\n", FLUSH}},
        {"v2 fetch without agent or object-format",
         0,
         2,
         GITPROTO_CAP_FETCH | GITPROTO_CAP_SHALLOW,
         "bbfs/1",
         A_OID,
         0,
         {"command=fetch\n", DELIM, "no-progress\n", "ofs-delta\n", "deepen 1\n",
          "want " A_OID "\n", "done\n", FLUSH}},
        {"v2 fetch without shallow", 0, 2, GITPROTO_CAP_FETCH, NULL, A_OID, -ENOTSUP, {NULL}},
        {"v2 ls-refs",
         1,
         2,
         v2_all,
         "bbfs/1",
         NULL,
         0,
         {"command=ls-refs\n", "agent=bbfs/1\n", "object-format=sha1\n", DELIM, "symrefs\n",
          "peel\n", "ref-prefix HEAD\n", "ref-prefix refs/heads/\n", "ref-prefix refs/tags/\n",
          FLUSH}},
        {"v2 without ls-refs", 1, 2, GITPROTO_CAP_FETCH, NULL, NULL, -ENOTSUP, {NULL}},
        {"v2 ls-refs of sha256", 1, 2, v2_all | GITPROTO_CAP_SHA256, NULL, NULL, -ENOTSUP, {NULL}},
    };
    size_t i, len;
    char *out, *want;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        out = request(cases[i].kind, cases[i].version, cases[i].caps, cases[i].agent, cases[i].want,
                      &rc);
        if (rc != cases[i].rc)
            fail_msg("%s: %d, not %d", cases[i].name, rc, cases[i].rc);
        if (cases[i].pkts[0]) {
            want = build(cases[i].pkts, &len);
            assert_non_null(out);
            assert_string_equal(out, want);
            free(want);
        }
        free(out);
    }
}

/* Requests parse back as the pkt-lines they were built from. */
static void test_request_is_pkt_lines(void **state)
{
    struct decoded out;
    char *req;
    int rc;

    (void)state;
    req = request(0, 2, GITPROTO_CAP_FETCH | GITPROTO_CAP_SHALLOW, NULL, B_OID, &rc);
    assert_int_equal(rc, 0);
    decode_all(req, strlen(req), 1, &out);
    assert_int_equal(out.err, 0);
    assert_int_equal(out.count, 8);
    assert_int_equal(out.types[1], PKT_DELIM);
    assert_string_equal(out.payloads[5], "want " B_OID "\n");
    assert_int_equal(out.types[7], PKT_FLUSH);
    assert_true(out.idle);
    free(req);
}

static void test_is_oid(void **state)
{
    (void)state;
    assert_true(gitproto_is_oid(A_OID));
    assert_true(gitproto_is_oid("0123456789abcdef0123456789abcdef01234567"));
    assert_false(gitproto_is_oid("0123456789ABCDEF0123456789abcdef01234567"));
    assert_false(gitproto_is_oid(A_OID "1"));
    assert_false(gitproto_is_oid("111"));
    assert_false(gitproto_is_oid(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pkt_decode_table),
        cmocka_unit_test(test_pkt_decode_largest),
        cmocka_unit_test(test_pkt_encode),
        cmocka_unit_test(test_captured_v0_advertisement),
        cmocka_unit_test(test_captured_v2_advertisement),
        cmocka_unit_test(test_captured_ls_refs),
        cmocka_unit_test(test_list_table),
        cmocka_unit_test(test_list_details),
        cmocka_unit_test(test_too_many_refs),
        cmocka_unit_test(test_captured_fetch_v2),
        cmocka_unit_test(test_captured_fetch_v0),
        cmocka_unit_test(test_captured_refusal),
        cmocka_unit_test(test_fetch_table),
        cmocka_unit_test(test_fetch_sink_refuses),
        cmocka_unit_test(test_requests),
        cmocka_unit_test(test_request_is_pkt_lines),
        cmocka_unit_test(test_is_oid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
