/*
 * token.h - where the bearer token comes from.
 *
 * Sources, first found wins: token_file= (refused when group- or
 * world-readable), $BITBUCKET_TOKEN, then a no-echo prompt when stdin is a
 * terminal. The token is never printed; buffers that held it are wiped.
 */
#ifndef BBFS_TOKEN_H
#define BBFS_TOKEN_H

#include <stddef.h>

/* On success *token is a new string to be released with token_free. */
int token_load(const char *token_file, char **token, char *err, size_t errlen);
/* Wipes and frees. */
void token_free(char *token);

#endif
