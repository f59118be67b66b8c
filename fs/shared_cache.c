/*
 * shared_cache.c - the policy of the cache a fleet shares (see
 * shared_cache.h) over the Redis client of api/redis.h.
 *
 * One fetch across machines: a look-up that finds nothing takes the lease on
 * the key (SET NX PX) and returns "fetch it"; its answer, when saved, goes to
 * the writer thread together with the lease, which is released once the
 * value is written. An answer of the API is saved from another call than
 * the one that loaded it (a listing's pages are kept only once the whole
 * walk succeeded), so the leases taken by look-ups wait here, by key, for
 * their answer; one whose answer never comes (a failed fetch) is forgotten
 * when it expires in Redis, and its waiters fetch themselves.
 */
#include "fs/shared_cache.h"

#include "api/api.h"
#include "api/buf.h"
#include "api/redis.h"
#include "fs/token.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Leases held for answers not saved yet: fetches in flight in this process. */
#define HELD_LEASES_MAX 64

struct held_lease {
    struct redis_lease lease; /* lease.held: the slot is in use */
    int64_t until_ms;         /* CLOCK_MONOTONIC: when it expires in Redis */
};

struct shared_cache {
    struct redis_client *redis;
    char *origin; /* the API's base URL, without a trailing '/' */
    char *workspace;
    long ttl;
    long wait_ms;  /* how long a look-up waits for another machine's fetch */
    long lease_ms; /* how long a lease lasts when its holder never releases it */
    size_t max_value;
    uint64_t hits, misses, waits; /* look-ups (atomic) */
    pthread_mutex_t lock;
    struct held_lease held[HELD_LEASES_MAX];
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void count(uint64_t *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

/* ---- set-up ---- */

int shared_cache_open(const struct shared_cache_config *cfg, struct shared_cache **out, char *err,
                      size_t errlen)
{
    struct shared_cache *sc = calloc(1, sizeof(*sc));
    char *credential = NULL;
    int rc = -ENOMEM;

    *out = NULL;
    if (!sc) {
        snprintf(err, errlen, "shared_cache: out of memory");
        return rc;
    }
    pthread_mutex_init(&sc->lock, NULL);
    sc->origin = strdup(cfg->api_url);
    sc->workspace = strdup(cfg->workspace);
    if (!sc->origin || !sc->workspace) {
        snprintf(err, errlen, "shared_cache: out of memory");
        goto out;
    }
    for (size_t n = strlen(sc->origin); n > 0 && sc->origin[n - 1] == '/'; n--)
        sc->origin[n - 1] = '\0';
    sc->ttl = cfg->ttl;
    sc->wait_ms =
        cfg->timeout_ms / 4 < SHARED_WAIT_MAX_MS ? cfg->timeout_ms / 4 : SHARED_WAIT_MAX_MS;
    sc->lease_ms = 2 * sc->wait_ms;
    sc->max_value = REDIS_DEFAULT_MAX_VALUE;
    if (cfg->auth_file &&
        (rc = secret_file_load(cfg->auth_file, "shared_cache_auth", &credential, err, errlen)))
        goto out;
    const struct redis_options opts = {
        .url = cfg->url,
        .credential = credential,
        .token = cfg->token && *cfg->token ? cfg->token : NULL,
        .max_value = sc->max_value,
    };
    rc = redis_client_new(&opts, &sc->redis, err, errlen);
out:
    token_free(credential);
    if (rc) {
        shared_cache_free(sc);
        return rc;
    }
    *out = sc;
    return 0;
}

void shared_cache_check(struct shared_cache *sc)
{
    if (sc)
        redis_check(sc->redis); /* a failure is logged by the client, once */
}

/* ---- keys ---- */

/*
 * The key of an answer addressed by a full commit hash, from its URL:
 * ORIGIN/repositories/WS/REPO/WHAT/HASH[REST], REST the directory and the
 * query. 0, or -EINVAL when url is no such answer (it is then not shared).
 */
static int key_of_url(const char *url, struct shared_key *key)
{
    const char *scheme = strstr(url, "://");
    const char *at = strstr(scheme ? scheme + 3 : url, "/repositories/");
    char *copy, *p, *parts[3], hash[API_HASH_LEN + 1], kind[64];
    int rc = -EINVAL;

    if (!at)
        return -EINVAL;
    /* One copy cut in place: ORIGIN, WS, REPO, WHAT, then HASH and REST as they are. */
    copy = strdup(url);
    if (!copy)
        return -ENOMEM;
    copy[at - url] = '\0';
    p = copy + (at - url) + strlen("/repositories/");
    for (int i = 0; i < 3; i++) {
        size_t n = strcspn(p, "/?");
        if (n == 0 || p[n] != '/')
            goto out;
        parts[i] = p;
        p[n] = '\0';
        p += n + 1;
    }
    if (strcspn(p, "/?") != API_HASH_LEN)
        goto out;
    memcpy(hash, p, API_HASH_LEN);
    hash[API_HASH_LEN] = '\0';
    if (!api_is_full_hash(hash) ||
        snprintf(kind, sizeof(kind), "answer %s", parts[2]) >= (int)sizeof(kind))
        goto out;
    const struct shared_address addr = {.origin = copy,
                                        .workspace = parts[0],
                                        .repo = parts[1],
                                        .kind = kind,
                                        .hash = hash,
                                        .path = p + API_HASH_LEN};
    rc = shared_key_by_hash(&addr, key);
out:
    free(copy);
    return rc;
}

static int key_of_content(const struct shared_cache *sc, const struct shared_content *what,
                          struct shared_key *key)
{
    const struct shared_address addr = {.origin = sc->origin,
                                        .workspace = sc->workspace,
                                        .repo = what->repo,
                                        .kind = what->kind,
                                        .hash = what->hash,
                                        .path = what->path ? what->path : ""};

    return shared_key_by_hash(&addr, key);
}

/* ---- leases held until their answer is saved ---- */

/* Keeps a lease taken by a look-up for the save of its answer (with no room, lets it go). */
static void hold_lease(struct shared_cache *sc, const struct redis_lease *lease)
{
    int64_t now = now_ms();
    int kept = 0;

    pthread_mutex_lock(&sc->lock);
    for (size_t i = 0; i < HELD_LEASES_MAX && !kept; i++) {
        struct held_lease *h = &sc->held[i];
        /* A lease expired in Redis is forgotten: its answer never came. */
        if (!h->lease.held || h->until_ms <= now) {
            h->lease = *lease;
            h->until_ms = now + sc->lease_ms;
            kept = 1;
        }
    }
    pthread_mutex_unlock(&sc->lock);
    if (!kept) {
        struct redis_lease copy = *lease;
        redis_lease_release(sc->redis, &copy); /* so that nobody waits for it */
    }
}

/* The lease held on key, taken out of the table (lease->held 0 when there is none). */
static void take_held_lease(struct shared_cache *sc, const struct shared_key *key,
                            struct redis_lease *lease)
{
    char name[SHARED_KEY_SIZE];
    int64_t now = now_ms();

    memset(lease, 0, sizeof(*lease));
    shared_lease_name(key, name);

    pthread_mutex_lock(&sc->lock);
    for (size_t i = 0; i < HELD_LEASES_MAX; i++) {
        struct held_lease *h = &sc->held[i];
        if (h->lease.held && h->until_ms > now && strcmp(h->lease.name, name) == 0) {
            *lease = h->lease;
            memset(h, 0, sizeof(*h));
            break;
        }
    }
    pthread_mutex_unlock(&sc->lock);
}

/* At the end: the leases whose answers never came go now, so that nobody waits for them. */
static void release_held_leases(struct shared_cache *sc)
{
    int64_t now = now_ms();

    for (size_t i = 0; i < HELD_LEASES_MAX; i++)
        if (sc->held[i].lease.held && sc->held[i].until_ms > now)
            redis_lease_release(sc->redis, &sc->held[i].lease);
}

void shared_cache_free(struct shared_cache *sc)
{
    if (!sc)
        return;
    if (sc->redis)
        release_held_leases(sc);
    redis_client_free(sc->redis);
    pthread_mutex_destroy(&sc->lock);
    free(sc->origin);
    free(sc->workspace);
    free(sc);
}

/* ---- look-ups ---- */

/*
 * The value of a hash-addressed key, or one fetch across machines: while
 * another machine fetches it, waits for its value; when nobody does, takes
 * the lease (*lease, for the write of the answer). 0 and *v, or -ENOENT:
 * fetch it.
 */
static int get_or_claim(struct shared_cache *sc, const struct shared_key *key,
                        struct redis_value *v, struct redis_lease *lease)
{
    int rc = redis_get(sc->redis, key, v);
    int may_wait = !api_nowait();

    memset(lease, 0, sizeof(*lease));
    if (rc == -ENOENT && may_wait && redis_lease_take(sc->redis, key, sc->lease_ms, lease) == 0) {
        count(&sc->waits);
        rc = redis_wait(sc->redis, key, REDIS_ANY_VALUE, sc->wait_ms, v);
    }
    if (rc == 0 || may_wait)
        count(rc == 0 ? &sc->hits : &sc->misses);
    return rc == 0 ? 0 : -ENOENT;
}

int shared_cache_load(struct shared_cache *sc, const char *url, char **body, size_t *len)
{
    struct shared_key key;
    struct redis_lease lease;
    struct redis_value v;

    if (!sc || key_of_url(url, &key) != 0)
        return -ENOENT;
    if (get_or_claim(sc, &key, &v, &lease) != 0) {
        if (lease.held)
            hold_lease(sc, &lease);
        return -ENOENT;
    }
    *body = v.body;
    *len = v.len;
    free(v.etag);
    return 0;
}

void shared_cache_save(struct shared_cache *sc, const char *url, const char *body, size_t len)
{
    struct shared_key key;
    struct redis_lease lease;

    if (!sc || key_of_url(url, &key) != 0)
        return;
    take_held_lease(sc, &key, &lease);
    const struct redis_entry entry = {.body = body, .len = len, .fetched_at = time(NULL)};
    redis_put_async(sc->redis, &key, &entry, SHARED_BY_HASH_EXPIRE_MS, &lease);
}

void shared_answer_release(struct shared_answer *a)
{
    free(a->body);
    free(a->etag);
    memset(a, 0, sizeof(*a));
}

static int is_fresh(const struct shared_cache *sc, int64_t fetched_at, int64_t now)
{
    return fetched_at <= now && now - fetched_at < sc->ttl;
}

/* Makes v *a if it is newer (taking its strings): 1, else 0 (v released). */
static int take_if_newer(struct shared_answer *a, struct redis_value *v, int64_t now)
{
    /* A clock a little ahead of ours is as good as ours; much further, the time is unknown. */
    if (v->fetched_at > now)
        v->fetched_at = v->fetched_at - now <= SHARED_CLOCK_SKEW_MAX ? now : 0;
    if (a->body && v->fetched_at <= a->fetched_at) {
        redis_value_release(v);
        return 0;
    }
    shared_answer_release(a);
    a->body = v->body;
    a->len = v->len;
    a->etag = v->etag;
    a->fetched_at = v->fetched_at;
    memset(v, 0, sizeof(*v));
    return 1;
}

/*
 * Nothing fresh anywhere: waits for the answer of another machine fetching
 * it, or takes the lease and fetches. 1 when *a is now another's answer.
 */
static int wait_or_claim(struct shared_cache *sc, const struct shared_key *key,
                         struct shared_answer *a, int64_t now)
{
    struct redis_lease lease;
    struct redis_value v;
    int rc = redis_lease_take(sc->redis, key, sc->lease_ms, &lease);

    if (rc == 1)
        hold_lease(sc, &lease);
    if (rc != 0)
        return 0;
    count(&sc->waits);
    rc = redis_wait(sc->redis, key, a->body ? a->fetched_at : REDIS_ANY_VALUE, sc->wait_ms, &v);
    return rc == 0 && take_if_newer(a, &v, now);
}

int shared_cache_load_mutable(struct shared_cache *sc, const char *url, int peek,
                              struct shared_answer *a)
{
    int64_t now = (int64_t)time(NULL);
    struct shared_key key;
    struct redis_value v;
    int rc, from_redis = 0;

    if (!sc || (a->body && is_fresh(sc, a->fetched_at, now)) ||
        redis_key_mutable(sc->redis, url, &key) != 0)
        return 0;
    rc = redis_get(sc->redis, &key, &v);
    if (rc == 0)
        from_redis = take_if_newer(a, &v, now);
    /* With ttl 0 nothing is ever fresh: another machine's answer would save no request. A FUSE
     * thread (nowait) takes no lease: its request runs again where it may wait. */
    if ((rc == 0 || rc == -ENOENT) && !peek && !api_nowait() && sc->ttl > 0 &&
        !(a->body && is_fresh(sc, a->fetched_at, now)))
        from_redis |= wait_or_claim(sc, &key, a, now);
    if (from_redis || !api_nowait())
        count(from_redis ? &sc->hits : &sc->misses);
    return from_redis;
}

/* An ETag Redis may keep: short, printable; another is left out (revalidated in full). */
static const char *shareable_etag(const char *etag)
{
    if (!etag || strlen(etag) > SHARED_ETAG_MAX)
        return NULL;
    for (const char *p = etag; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return NULL;
    return etag;
}

void shared_cache_save_mutable(struct shared_cache *sc, const char *url, const char *body,
                               size_t len, const char *etag, int64_t fetched_at)
{
    struct shared_key key;
    struct redis_lease lease;

    if (!sc || redis_key_mutable(sc->redis, url, &key) != 0)
        return;
    long expire_ms = 2 * sc->ttl * 1000L;
    take_held_lease(sc, &key, &lease);
    const struct redis_entry entry = {
        .body = body, .len = len, .etag = shareable_etag(etag), .fetched_at = fetched_at};
    redis_put_async(sc->redis, &key, &entry,
                    expire_ms > SHARED_MUTABLE_EXPIRE_MIN_MS ? expire_ms
                                                             : SHARED_MUTABLE_EXPIRE_MIN_MS,
                    &lease);
}

/* ---- contents ---- */

/*
 * The sink a fetch writes through: every piece goes on to the reader's sink
 * and, while the whole stays under the cap, into a copy for Redis.
 */
struct tee {
    const struct api_sink *out;
    struct buf copy;
};

static int tee_write(void *ctx, const void *data, size_t len)
{
    struct tee *t = ctx;
    int rc = t->out->write(t->out->ctx, data, len);

    if (rc == 0 && !t->copy.err)
        buf_append(&t->copy, data, len); /* over the cap: err set, the copy is dropped */
    return rc;
}

static int tee_cancelled(void *ctx)
{
    const struct tee *t = ctx;

    return t->out->cancelled && t->out->cancelled(t->out->ctx);
}

int shared_cache_content(struct shared_cache *sc, const struct shared_content *what,
                         const struct api_sink *sink, uint64_t *size, shared_fetch_fn fetch,
                         void *arg)
{
    struct shared_key key;
    struct redis_lease lease;
    struct redis_value v;
    int rc;

    if (!sc || key_of_content(sc, what, &key) != 0)
        return fetch(arg, sink, size);
    if (get_or_claim(sc, &key, &v, &lease) == 0) {
        rc = v.len ? sink->write(sink->ctx, v.body, v.len) : 0;
        *size = v.len;
        redis_value_release(&v);
        return rc;
    }
    struct tee tee = {.out = sink};
    const struct api_sink through = {tee_write, tee_cancelled, &tee};

    buf_init(&tee.copy, sc->max_value);
    rc = fetch(arg, &through, size);
    if (rc == 0 && !tee.copy.err && tee.copy.len == *size) {
        const struct redis_entry entry = {
            .body = tee.copy.data, .len = tee.copy.len, .fetched_at = time(NULL)};
        redis_put_async(sc->redis, &key, &entry, SHARED_BY_HASH_EXPIRE_MS, &lease); /* copies it */
    } else {
        redis_lease_release(sc->redis, &lease);
    }
    buf_release(&tee.copy);
    return rc;
}

void shared_cache_print_stats(struct shared_cache *sc, FILE *f)
{
    struct redis_stats r = {0};
    uint64_t hits = 0, misses = 0, waits = 0;

    if (sc) {
        redis_get_stats(sc->redis, &r);
        hits = __atomic_load_n(&sc->hits, __ATOMIC_RELAXED);
        misses = __atomic_load_n(&sc->misses, __ATOMIC_RELAXED);
        waits = __atomic_load_n(&sc->waits, __ATOMIC_RELAXED);
    }
    fprintf(f, "shared_cache %s\n", !sc ? "off" : r.down ? "down" : "up");
    fprintf(f, "shared_hits %" PRIu64 "\n", hits);
    fprintf(f, "shared_misses %" PRIu64 "\n", misses);
    fprintf(f, "shared_waits %" PRIu64 "\n", waits);
    fprintf(f, "shared_writes %" PRIu64 "\n", r.writes);
    fprintf(f, "shared_errors %" PRIu64 "\n", r.errors);
    fprintf(f, "shared_bytes_read %" PRIu64 "\n", r.bytes_read);
    fprintf(f, "shared_bytes_written %" PRIu64 "\n", r.bytes_written);
    fprintf(f, "shared_damaged %" PRIu64 "\n", r.damaged);
    fprintf(f, "shared_dropped %" PRIu64 "\n", r.dropped);
}
