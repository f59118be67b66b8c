/*
 * token.h - where the bearer token comes from.
 *
 * Sources, first found wins: token_file= (refused when group- or
 * world-readable), $BITBUCKET_TOKEN, then a no-echo prompt when stdin is a
 * terminal. The token is never printed; buffers that held it are wiped.
 * Other secrets (the shared cache's password) come from files under the
 * same rules.
 */
#ifndef BBFS_TOKEN_H
#define BBFS_TOKEN_H

#include <stddef.h>

/* On success *token is a new string to be released with token_free. */
int token_load(const char *token_file, char **token, char *err, size_t errlen);
/* Wipes and frees (also what secret_file_load gave). */
void token_free(char *token);

/*
 * The first line of the file path, without surrounding white space, refused
 * like token_file when group- or world-readable, empty or with control
 * characters (inner spaces are kept: a password may have them). option names
 * the file in messages ("shared_cache_auth" gives "shared_cache_auth file
 * '...'"), which never quote the secret. *secret is released with token_free.
 */
int secret_file_load(const char *path, const char *option, char **secret, char *err, size_t errlen);

#endif
