/*
 * gitproto.c - pkt-lines, advertisements, ls-refs and the depth-1 fetch of
 * git's smart HTTP protocol (gitprotocol-http(5), gitprotocol-v2(5),
 * gitprotocol-pack(5)), over bytes only. See gitproto.h.
 *
 * Each parser is a small state machine over whole packets; the decoder
 * below it copies one packet at a time, so the chunking of the input never
 * matters and nothing grows with the answer's size but the ref list.
 */
#include "api/gitproto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/log.h"

#define SERVICE_LINE "# service=git-upload-pack"
#define PEELED_SUFFIX "^{}"

/* ---- shared helpers ---- */

int gitproto_is_oid(const char *s)
{
    size_t i;

    for (i = 0; i < GITPROTO_OID_HEX; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[i] == '\0';
}

/* Whether the first 40 bytes of a line (of len bytes) are an object name and a space follows. */
static int starts_with_oid(const char *line, size_t len)
{
    size_t i;

    if (len < GITPROTO_OID_HEX + 1 || line[GITPROTO_OID_HEX] != ' ')
        return 0;
    for (i = 0; i < GITPROTO_OID_HEX; i++)
        if (!((line[i] >= '0' && line[i] <= '9') || (line[i] >= 'a' && line[i] <= 'f')))
            return 0;
    return 1;
}

/* A data packet's text without its one trailing newline. */
static size_t line_len(const struct pkt *pkt)
{
    return pkt->len > 0 && pkt->data[pkt->len - 1] == '\n' ? pkt->len - 1 : pkt->len;
}

static int line_is(const struct pkt *pkt, const char *text)
{
    size_t n = strlen(text);

    return pkt->type == PKT_DATA && line_len(pkt) == n && memcmp(pkt->data, text, n) == 0;
}

static int has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);

    return len >= n && memcmp(s, prefix, n) == 0;
}

/* The server's error text (len bytes, not necessarily terminated), sanitised into msg. */
static void set_message(char msg[GITPROTO_MESSAGE_MAX], const char *text, size_t len)
{
    char raw[GITPROTO_MESSAGE_MAX];

    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    if (len >= sizeof(raw))
        len = sizeof(raw) - 1;
    memcpy(raw, text, len);
    raw[len] = '\0';
    log_sanitize(msg, GITPROTO_MESSAGE_MAX, raw);
}

/* -EREMOTEIO with the text kept, when a data packet is an ERR line; else 0. */
static int err_line(const struct pkt *pkt, char msg[GITPROTO_MESSAGE_MAX])
{
    if (pkt->type != PKT_DATA || !has_prefix(pkt->data, pkt->len, "ERR "))
        return 0;
    set_message(msg, pkt->data + 4, pkt->len - 4);
    return -EREMOTEIO;
}

/* ---- refs ---- */

void gitproto_refs_release(struct gitproto_refs *refs)
{
    size_t i;

    for (i = 0; i < refs->count; i++) {
        free(refs->items[i].name);
        free(refs->items[i].symref);
    }
    free(refs->items);
    memset(refs, 0, sizeof(*refs));
}

const struct gitproto_ref *gitproto_refs_find(const struct gitproto_refs *refs, const char *name)
{
    size_t i;

    for (i = 0; i < refs->count; i++)
        if (strcmp(refs->items[i].name, name) == 0)
            return &refs->items[i];
    return NULL;
}

void gitproto_adv_release(struct gitproto_adv *adv)
{
    gitproto_refs_release(&adv->refs);
    memset(adv, 0, sizeof(*adv));
}

/* The refs a reader of branches and tags needs; the rest (pull requests, notes) are skipped. */
static int wanted_ref(const char *name, size_t len)
{
    return (len == 4 && memcmp(name, "HEAD", 4) == 0) || has_prefix(name, len, "refs/heads/") ||
           has_prefix(name, len, "refs/tags/");
}

/* Adds ref name (len bytes, no NUL inside) with object oid; *added gets it (NULL if skipped). */
static int add_ref(struct gitproto_refs *refs, const char *oid, const char *name, size_t len,
                   struct gitproto_ref **added)
{
    struct gitproto_ref *r, *grown;
    size_t alloc;

    *added = NULL;
    if (len == 0 || memchr(name, '\0', len) || !wanted_ref(name, len))
        return 0;
    if (refs->count >= GITPROTO_MAX_REFS)
        return -EFBIG;
    if (refs->count == refs->alloc) {
        alloc = refs->alloc ? refs->alloc * 2 : 16;
        grown = realloc(refs->items, alloc * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        refs->items = grown;
        refs->alloc = alloc;
    }
    r = &refs->items[refs->count];
    memset(r, 0, sizeof(*r));
    r->name = strndup(name, len);
    if (!r->name)
        return -ENOMEM;
    memcpy(r->oid, oid, GITPROTO_OID_HEX);
    refs->count++;
    *added = r;
    return 0;
}

/* The ref called name (len bytes), or NULL. */
static struct gitproto_ref *find_ref(struct gitproto_refs *refs, const char *name, size_t len)
{
    size_t i;

    for (i = refs->count; i-- > 0;)
        if (strlen(refs->items[i].name) == len && memcmp(refs->items[i].name, name, len) == 0)
            return &refs->items[i];
    return NULL;
}

static int set_symref(struct gitproto_ref *r, const char *target, size_t len)
{
    if (!r || len == 0 || memchr(target, '\0', len))
        return 0;
    free(r->symref);
    r->symref = strndup(target, len);
    return r->symref ? 0 : -ENOMEM;
}

/*
 * One v0 ref line, "OID NAME" (len bytes): a ref, or NAME^{} giving the
 * peeled object of the tag just before it.
 */
static int v0_ref_line(struct gitproto_refs *refs, const char *line, size_t len)
{
    const char *name = line + GITPROTO_OID_HEX + 1;
    size_t name_len = len - GITPROTO_OID_HEX - 1, suffix = strlen(PEELED_SUFFIX);
    struct gitproto_ref *r;

    if (name_len > suffix && memcmp(name + name_len - suffix, PEELED_SUFFIX, suffix) == 0) {
        r = find_ref(refs, name, name_len - suffix);
        if (r)
            memcpy(r->peeled, line, GITPROTO_OID_HEX);
        return 0;
    }
    return add_ref(refs, line, name, name_len, &r);
}

/* The space-separated words of s (len bytes), one at a time: 1 with a word, 0 at the end. */
static int next_word(const char **s, const char *end, const char **word, size_t *len)
{
    while (*s < end && **s == ' ')
        (*s)++;
    if (*s >= end)
        return 0;
    *word = *s;
    while (*s < end && **s != ' ')
        (*s)++;
    *len = (size_t)(*s - *word);
    return 1;
}

static unsigned object_format_cap(const char *value, size_t len)
{
    return len == 4 && memcmp(value, "sha1", 4) == 0 ? GITPROTO_CAP_OBJECT_FORMAT
                                                     : GITPROTO_CAP_SHA256;
}

/* The v0 capabilities after the first ref's NUL. */
static int v0_caps(struct gitproto_adv *adv, const char *s, const char *end)
{
    static const struct {
        const char *name;
        unsigned cap;
    } known[] = {
        {"shallow", GITPROTO_CAP_SHALLOW},
        {"side-band-64k", GITPROTO_CAP_SIDE_BAND_64K},
        {"ofs-delta", GITPROTO_CAP_OFS_DELTA},
        {"no-progress", GITPROTO_CAP_NO_PROGRESS},
        {"allow-tip-sha1-in-want", GITPROTO_CAP_ALLOW_TIP},
        {"allow-reachable-sha1-in-want", GITPROTO_CAP_ALLOW_REACHABLE},
    };
    const char *w;
    size_t n, i;
    int rc;

    while (next_word(&s, end, &w, &n)) {
        for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            if (n == strlen(known[i].name) && memcmp(w, known[i].name, n) == 0)
                adv->caps |= known[i].cap;
        if (has_prefix(w, n, "agent="))
            adv->caps |= GITPROTO_CAP_AGENT;
        else if (has_prefix(w, n, "object-format="))
            adv->caps |= object_format_cap(w + 14, n - 14);
        else if (has_prefix(w, n, "symref=HEAD:")) {
            rc = set_symref(find_ref(&adv->refs, "HEAD", 4), w + 12, n - 12);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* The first v0 line: "OID NAME\0CAPS" (an empty repository: a zero OID and capabilities^{}). */
static int v0_first_line(struct gitproto_adv *adv, const struct pkt *pkt)
{
    size_t len = line_len(pkt);
    const char *nul = memchr(pkt->data, '\0', len);
    size_t ref_len = nul ? (size_t)(nul - pkt->data) : len;
    int rc;

    if (!starts_with_oid(pkt->data, ref_len))
        return -EPROTO;
    rc = v0_ref_line(&adv->refs, pkt->data, ref_len);
    if (rc == 0 && nul)
        rc = v0_caps(adv, nul + 1, pkt->data + len);
    return rc;
}

/* One v2 capability line: "KEY" or "KEY=VALUE". */
static void v2_cap_line(struct gitproto_adv *adv, const char *s, size_t len)
{
    const char *w, *end = s + len;
    size_t n;

    if ((len == 7 && memcmp(s, "ls-refs", 7) == 0) || has_prefix(s, len, "ls-refs="))
        adv->caps |= GITPROTO_CAP_LS_REFS;
    else if (has_prefix(s, len, "agent="))
        adv->caps |= GITPROTO_CAP_AGENT;
    else if (has_prefix(s, len, "object-format="))
        adv->caps |= object_format_cap(s + 14, len - 14);
    else if ((len == 5 && memcmp(s, "fetch", 5) == 0) || has_prefix(s, len, "fetch=")) {
        /* v2's fetch always multiplexes its pack and takes ofs-delta and no-progress */
        adv->caps |= GITPROTO_CAP_FETCH | GITPROTO_CAP_SIDE_BAND_64K | GITPROTO_CAP_OFS_DELTA |
                     GITPROTO_CAP_NO_PROGRESS;
        s += len > 5 ? 6 : 5;
        while (next_word(&s, end, &w, &n))
            if (n == 7 && memcmp(w, "shallow", 7) == 0)
                adv->caps |= GITPROTO_CAP_SHALLOW;
    }
}

/* One ls-refs line: "OID NAME[ symref-target:REF][ peeled:OID]". */
static int ls_refs_line(struct gitproto_refs *refs, const char *line, size_t len)
{
    const char *end = line + len, *s, *w;
    struct gitproto_ref *r;
    size_t n;
    int rc;

    if (has_prefix(line, len, "unborn "))
        return 0; /* HEAD of an empty repository: nothing to fetch */
    if (!starts_with_oid(line, len) || memchr(line, '\0', len))
        return -EPROTO;
    s = line + GITPROTO_OID_HEX + 1;
    if (!next_word(&s, end, &w, &n))
        return -EPROTO;
    rc = add_ref(refs, line, w, n, &r);
    while (rc == 0 && r && next_word(&s, end, &w, &n)) {
        if (has_prefix(w, n, "symref-target:"))
            rc = set_symref(r, w + 14, n - 14);
        else if (has_prefix(w, n, "peeled:") && n == 7 + GITPROTO_OID_HEX) {
            memcpy(r->peeled, w + 7, GITPROTO_OID_HEX);
            r->peeled[GITPROTO_OID_HEX] = '\0';
            if (!gitproto_is_oid(r->peeled))
                return -EPROTO;
        }
    }
    return rc;
}

/* ---- the list parser: discovery and ls-refs ---- */

enum list_state {
    L_START,         /* discovery: the service line, a version line or the first ref */
    L_SERVICE_FLUSH, /* after "# service=...": its flush */
    L_AFTER_SERVICE, /* a version line or the first ref */
    L_V0_FIRST,      /* after "version 1": the first ref */
    L_V0_REFS,       /* the other refs, up to the flush */
    L_V2_CAPS,       /* capability lines, up to the flush */
    L_LS_REFS,       /* ls-refs lines, up to the flush */
    L_DONE,
    L_FAILED,
};

void gitproto_list_init(struct gitproto_list_parser *p, enum gitproto_list_kind kind,
                        struct gitproto_adv *out)
{
    pkt_decoder_init(&p->dec);
    p->kind = kind;
    p->state = kind == GITPROTO_LS_REFS ? L_LS_REFS : L_START;
    p->adv = out;
    p->message[0] = '\0';
}

/* The line that tells what follows the service line (or starts an answer without one). */
static int list_opening(struct gitproto_list_parser *p, const struct pkt *pkt)
{
    if (pkt->type == PKT_FLUSH) {
        p->state = L_DONE; /* no refs and no capabilities: an empty v0 repository */
        return 0;
    }
    if (line_is(pkt, "version 2")) {
        p->adv->version = 2;
        p->state = L_V2_CAPS;
        return 0;
    }
    if (line_is(pkt, "version 1")) {
        p->state = L_V0_FIRST;
        return 0;
    }
    p->state = L_V0_REFS;
    return v0_first_line(p->adv, pkt);
}

static int list_packet(struct gitproto_list_parser *p, const struct pkt *pkt)
{
    int rc = err_line(pkt, p->message);

    if (rc < 0)
        return rc;
    if (pkt->type == PKT_DELIM || pkt->type == PKT_RESPONSE_END || p->state == L_DONE)
        return -EPROTO;
    switch (p->state) {
    case L_START:
        if (line_is(pkt, SERVICE_LINE)) {
            p->state = L_SERVICE_FLUSH;
            return 0;
        }
        return list_opening(p, pkt);
    case L_SERVICE_FLUSH:
        if (pkt->type != PKT_FLUSH)
            return -EPROTO;
        p->state = L_AFTER_SERVICE;
        return 0;
    case L_AFTER_SERVICE:
        return list_opening(p, pkt);
    case L_V0_FIRST:
        if (pkt->type == PKT_FLUSH) {
            p->state = L_DONE;
            return 0;
        }
        p->state = L_V0_REFS;
        return v0_first_line(p->adv, pkt);
    case L_V0_REFS:
        if (pkt->type == PKT_FLUSH) {
            p->state = L_DONE;
            return 0;
        }
        if (has_prefix(pkt->data, pkt->len, "shallow "))
            return 0; /* the server's own repository is shallow: nothing to us */
        if (!starts_with_oid(pkt->data, line_len(pkt)) || memchr(pkt->data, '\0', pkt->len))
            return -EPROTO;
        return v0_ref_line(&p->adv->refs, pkt->data, line_len(pkt));
    case L_V2_CAPS:
        if (pkt->type == PKT_FLUSH) {
            p->state = L_DONE;
            return 0;
        }
        v2_cap_line(p->adv, pkt->data, line_len(pkt));
        return 0;
    case L_LS_REFS:
        if (pkt->type == PKT_FLUSH) {
            p->state = L_DONE;
            return 0;
        }
        return ls_refs_line(&p->adv->refs, pkt->data, line_len(pkt));
    default:
        return -EPROTO;
    }
}

int gitproto_list_feed(struct gitproto_list_parser *p, const char *data, size_t len)
{
    struct pkt pkt;
    int rc;

    if (p->state == L_FAILED)
        return -EPROTO;
    while (len > 0) {
        rc = pkt_decode(&p->dec, &data, &len, &pkt);
        if (rc == 0)
            break;
        if (rc > 0)
            rc = list_packet(p, &pkt);
        if (rc < 0) {
            p->state = L_FAILED;
            return rc;
        }
    }
    return 0;
}

int gitproto_list_finish(struct gitproto_list_parser *p)
{
    return p->state == L_DONE && pkt_decoder_idle(&p->dec) ? 0 : -EPROTO;
}

/* ---- requests ---- */

/* The agent argument, if the server takes one and ours is one word of printable ASCII. */
static int agent_ok(unsigned caps, const char *agent)
{
    const char *s;

    if (!(caps & GITPROTO_CAP_AGENT) || !agent || !*agent)
        return 0;
    for (s = agent; *s; s++)
        if (*s <= ' ' || *s >= 0x7f)
            return 0;
    return strlen(agent) < 128;
}

/* "command=NAME", the agent and object format, and the delimiter of a v2 request. */
static void v2_command(struct buf *b, const char *command, unsigned caps, const char *agent)
{
    char line[192];

    snprintf(line, sizeof(line), "command=%s\n", command);
    pkt_append_str(b, line);
    if (agent_ok(caps, agent)) {
        snprintf(line, sizeof(line), "agent=%s\n", agent);
        pkt_append_str(b, line);
    }
    if (caps & GITPROTO_CAP_OBJECT_FORMAT)
        pkt_append_str(b, "object-format=sha1\n");
    pkt_append_delim(b);
}

int gitproto_ls_refs_request(struct buf *b, unsigned caps, const char *agent)
{
    if (!(caps & GITPROTO_CAP_LS_REFS) || (caps & GITPROTO_CAP_SHA256))
        return -ENOTSUP;
    v2_command(b, "ls-refs", caps, agent);
    pkt_append_str(b, "symrefs\n");
    pkt_append_str(b, "peel\n");
    pkt_append_str(b, "ref-prefix HEAD\n");
    pkt_append_str(b, "ref-prefix refs/heads/\n");
    pkt_append_str(b, "ref-prefix refs/tags/\n");
    return pkt_append_flush(b);
}

int gitproto_fetch_request(struct buf *b, int version, unsigned caps, const char *agent,
                           const char *want)
{
    char line[256];

    if (!want || !gitproto_is_oid(want))
        return -EINVAL;
    if (caps & GITPROTO_CAP_SHA256)
        return -ENOTSUP;
    if (version == 2) {
        if (!(caps & GITPROTO_CAP_FETCH) || !(caps & GITPROTO_CAP_SHALLOW))
            return -ENOTSUP;
        v2_command(b, "fetch", caps, agent);
        pkt_append_str(b, "no-progress\n");
        pkt_append_str(b, "ofs-delta\n");
        pkt_append_str(b, "deepen 1\n");
        snprintf(line, sizeof(line), "want %s\n", want);
        pkt_append_str(b, line);
        pkt_append_str(b, "done\n");
        return pkt_append_flush(b);
    }
    if (!(caps & GITPROTO_CAP_SIDE_BAND_64K) || !(caps & GITPROTO_CAP_SHALLOW))
        return -ENOTSUP;
    snprintf(line, sizeof(line), "want %s side-band-64k%s%s shallow%s%s\n", want,
             caps & GITPROTO_CAP_OFS_DELTA ? " ofs-delta" : "",
             caps & GITPROTO_CAP_NO_PROGRESS ? " no-progress" : "",
             agent_ok(caps, agent) ? " agent=" : "", agent_ok(caps, agent) ? agent : "");
    pkt_append_str(b, line);
    pkt_append_str(b, "deepen 1\n");
    pkt_append_flush(b);
    return pkt_append_str(b, "done\n");
}

/* ---- the fetch answer ---- */

enum fetch_state {
    F_V0_SHALLOW, /* shallow/unshallow lines up to a flush */
    F_V0_ACKS,    /* NAK, or ACK lines */
    F_V2_SECTION, /* a section's name */
    F_V2_LINES,   /* the lines of a section other than packfile */
    F_PACK,       /* side-band packets up to the flush */
    F_DONE,
    F_FAILED,
};

void gitproto_fetch_init(struct gitproto_fetch_parser *p, int version, gitproto_pack_fn pack_fn,
                         void *ctx)
{
    pkt_decoder_init(&p->dec);
    p->version = version;
    p->state = version == 2 ? F_V2_SECTION : F_V0_SHALLOW;
    p->pack_fn = pack_fn;
    p->ctx = ctx;
    p->pack_bytes = 0;
    p->message[0] = '\0';
}

/* A side-band packet: band 1 to pack_fn, band 2 dropped, band 3 an error. */
static int sideband(struct gitproto_fetch_parser *p, const struct pkt *pkt)
{
    if (pkt->type == PKT_FLUSH) {
        p->state = F_DONE;
        return 0;
    }
    if (pkt->type != PKT_DATA || pkt->len == 0)
        return -EPROTO;
    switch (pkt->data[0]) {
    case 1:
        if (pkt->len == 1)
            return 0; /* a keep-alive */
        p->pack_bytes += pkt->len - 1;
        return p->pack_fn(p->ctx, pkt->data + 1, pkt->len - 1);
    case 2:
        return 0;
    case 3:
        set_message(p->message, pkt->data + 1, pkt->len - 1);
        return -EREMOTEIO;
    default:
        return -EPROTO;
    }
}

/* v0: the shallow list and then NAK (or ACKs: we sent no haves, so none that matter). */
static int v0_head(struct gitproto_fetch_parser *p, const struct pkt *pkt)
{
    size_t len = line_len(pkt);

    if (p->state == F_V0_SHALLOW) {
        if (pkt->type == PKT_FLUSH) {
            p->state = F_V0_ACKS;
            return 0;
        }
        if (pkt->type == PKT_DATA &&
            (has_prefix(pkt->data, len, "shallow ") || has_prefix(pkt->data, len, "unshallow ")))
            return 0;
    }
    if (pkt->type != PKT_DATA)
        return -EPROTO;
    if (len == 3 && memcmp(pkt->data, "NAK", 3) == 0) {
        p->state = F_PACK;
        return 0;
    }
    if (!has_prefix(pkt->data, len, "ACK "))
        return -EPROTO;
    /* "ACK OID" ends the negotiation; "ACK OID continue|common|ready" do not */
    if (len == 4 + GITPROTO_OID_HEX)
        p->state = F_PACK;
    else
        p->state = F_V0_ACKS;
    return 0;
}

/* v2: section names and the lines of sections other than packfile. */
static int v2_sections(struct gitproto_fetch_parser *p, const struct pkt *pkt)
{
    if (p->state == F_V2_LINES) {
        if (pkt->type == PKT_DELIM)
            p->state = F_V2_SECTION;
        return pkt->type == PKT_FLUSH ? -EPROTO : 0; /* an answer without a pack */
    }
    if (line_is(pkt, "packfile")) {
        p->state = F_PACK;
        return 0;
    }
    if (line_is(pkt, "acknowledgments") || line_is(pkt, "shallow-info") ||
        line_is(pkt, "wanted-refs") || line_is(pkt, "packfile-uris")) {
        p->state = F_V2_LINES;
        return 0;
    }
    return -EPROTO;
}

static int fetch_packet(struct gitproto_fetch_parser *p, const struct pkt *pkt)
{
    int rc = err_line(pkt, p->message);

    if (rc < 0)
        return rc;
    switch (p->state) {
    case F_V0_SHALLOW:
    case F_V0_ACKS:
        return v0_head(p, pkt);
    case F_V2_SECTION:
    case F_V2_LINES:
        return v2_sections(p, pkt);
    case F_PACK:
        return sideband(p, pkt);
    case F_DONE:
        return pkt->type == PKT_RESPONSE_END ? 0 : -EPROTO;
    default:
        return -EPROTO;
    }
}

int gitproto_fetch_feed(struct gitproto_fetch_parser *p, const char *data, size_t len)
{
    struct pkt pkt;
    int rc;

    if (p->state == F_FAILED)
        return -EPROTO;
    while (len > 0) {
        rc = pkt_decode(&p->dec, &data, &len, &pkt);
        if (rc == 0)
            break;
        if (rc > 0)
            rc = fetch_packet(p, &pkt);
        if (rc < 0) {
            p->state = F_FAILED;
            return rc;
        }
    }
    return 0;
}

int gitproto_fetch_finish(struct gitproto_fetch_parser *p)
{
    return p->state == F_DONE && pkt_decoder_idle(&p->dec) ? 0 : -EPROTO;
}
