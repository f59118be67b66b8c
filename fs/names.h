/*
 * names.h - which strings from the API may become file names, and path
 * splitting.
 *
 * Names from the API are hostile. A name is exposed only when it is a valid,
 * unambiguous file name: not empty, not "." or "..", no '/', no control
 * characters, at most 255 bytes. Anything else is skipped (the caller logs
 * it once); a skipped name never aliases another entry.
 */
#ifndef BBFS_NAMES_H
#define BBFS_NAMES_H

#include <stddef.h>

#define NAMES_MAX_DEPTH 64

int names_is_valid(const char *name);

/* A ref name (feature/x) is exposable when every '/'-separated part is valid. */
int names_ref_is_valid(const char *ref);

/*
 * Splits a mutable path ("a/b/c", "" for the root) in place into at most
 * max components; returns their number, or -ENAMETOOLONG when deeper.
 */
int names_split(char *path, char **parts, int max);

/* Joins parts[from..to) with '/' into a new string, or NULL without memory. */
char *names_join(char *const *parts, int from, int to);

#endif
