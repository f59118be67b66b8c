/*
 * readahead.h - guessing what a reader will want next (internal to fs/).
 *
 * Two heuristics, with their state in a struct of their own:
 *   - a walk (ls -R, find, grep -r, diff -r) lists one directory of a commit
 *     after another: readahead_walk_root says when, and from which directory,
 *     one recursive listing would answer them all;
 *   - a reader going through the files of a directory (grep -r, cat *, tar)
 *     opens one after the other: readahead_opened downloads the files after
 *     the one opened while the reader works.
 */
#ifndef BBFS_READAHEAD_H
#define BBFS_READAHEAD_H

struct node;
struct readahead;
struct tree;

int readahead_new(struct readahead **out);
/* Waits for the downloads under way: before the cache and store they use go. */
void readahead_free(struct readahead *ra);

/*
 * Counts a listing of directory dir of repo at hash; when it completes a
 * walk's pattern, returns the directory to list recursively (malloc'd), else
 * NULL.
 */
char *readahead_walk_root(struct readahead *ra, const char *repo, const char *hash,
                          const char *dir);

/*
 * The recursive listing readahead_walk_root asked for could not be had
 * without waiting (nowait mode): the next listing of the walk asks again.
 */
void readahead_walk_again(struct readahead *ra, const char *repo, const char *hash);

/* A file of the source tree (NODE_TREE_FILE) is being opened. */
void readahead_opened(struct tree *tree, const struct node *n);

#endif
