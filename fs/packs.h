/*
 * packs.h - whole trees through git (internal to fs/; ../shared/DESIGN.md
 * "Whole trees through git"): when a commit's tree is fetched as one
 * shallow pack instead of one API request per file and per directory, and
 * the API's place taken by what the pack brought.
 *
 * When: once a walk of a commit's tree is seen (source.c's listings,
 * readahead.c's walk detection), or a reader goes through the files of one
 * of its directories (readahead.c), its pack is fetched, once; a small
 * repository's (repository.json's size under PACKS_SMALL_REPO) at the first
 * look into a tree at a commit, and a branch or tag tip's as soon as the
 * commit's directory is looked up (its date then needs no request either).
 * A single file read otherwise stays one API request.
 *
 * From then on that commit's listings, sizes, modes, symlink targets and
 * contents come from the store (unpack.h), also offline and after a
 * remount. Branch and tag names resolve from git's advertisement while
 * the API's listing of them is not in memory.
 *
 * Fallbacks: wherever git cannot serve, the API does, as without git; the
 * cause is logged once per repository and counted. git_url unreachable
 * (also: no answer within timeout) and a token git rejects (401) turn git
 * off for PACKS_RETRY_SECONDS for every repository; 403 and 404 for that
 * repository; a refused commit (not a tip on a server that sends only
 * tips), a broken or cut pack and a pack over the cap for that commit; a
 * repository whose size is over the cap is not asked at all.
 *
 * Every hook takes the tree; tree->packs may be NULL (no git and nothing of
 * it to read). All may be called from many threads at once.
 */
#ifndef BBFS_PACKS_H
#define BBFS_PACKS_H

#include <stdint.h>
#include <stdio.h>

struct api_entry_list;
struct api_repo;
struct cache_ref;
struct git_client;
struct packs;
struct tree;

#define PACKS_SMALL_REPO ((uint64_t)1 << 20)
#define PACKS_RETRY_SECONDS 60

struct packs_config {
    struct git_client *git; /* NULL: never fetch; what packs brought is still read */
    const char *work_dir;   /* a private directory for packs being indexed */
    uint64_t max_pack;      /* git_max=: no pack over it is fetched */
    uint64_t cache_size;    /* the store's bound: a quarter for a pack, half for its contents */
};

/* Creates work_dir (0700) and empties it. git is borrowed and must outlive the packs. */
int packs_new(const struct packs_config *cfg, struct packs **out);
/* Stops every fetch under way (they fail as cancelled); for unmounting, and interrupts. */
void packs_cancel(struct packs *packs);
void packs_free(struct packs *packs);

/*
 * source.c: a look into the tree of commit hash: a small repository's pack
 * comes now. 0, or -EWOULDBLOCK in nowait mode (api_nowait) when it would
 * be waited for: every hook answers so where it would wait for git.
 */
int packs_look(struct tree *tree, const struct api_repo *repo, const char *hash);

/*
 * source.c: directory dir of repo at hash from what a pack brought; walking:
 * a walk is under way, so the pack is fetched now if it was not. 0, or
 * -ENODATA when the API must answer.
 */
int packs_list_dir(struct tree *tree, const char *repo, const char *hash, const char *dir,
                   int walking, struct api_entry_list *out);

/*
 * commits.c: the date of commit hash when git knows it (its tree was
 * unpacked, or it is a small repository's tip, unpacked now): 0, or -ENODATA.
 */
int packs_commit_date(struct tree *tree, const struct api_repo *repo, const char *hash,
                      int64_t *date);

/* readahead.c: a reader goes through the files of hash: 0 once its pack's contents are stored. */
int packs_reading(struct tree *tree, const char *repo, const char *hash);

/*
 * blobs.c: before a file of hash is downloaded: waits for a pack of hash on
 * its way; 1 when it did (the file may be stored now), else 0.
 */
int packs_settle(struct tree *tree, const char *repo, const char *hash);

/*
 * refs.c: repo's branches (tags: its tags) from git's advertisement, as a
 * struct ref_index (objects.h) in *ref (cache_ref_put it); offline, the
 * last ones git gave. -ENODATA when the API must answer.
 */
int packs_refs(struct tree *tree, const struct api_repo *repo, int tags, struct cache_ref **ref);

/* stats.c: the git_ rows of .bbfs/stats. */
void packs_print_stats(struct tree *tree, FILE *f);

#endif
