/*
 * names.c - file-name validation and path splitting (see names.h).
 */
#include "fs/names.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int names_is_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 255 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

int names_ref_is_valid(const char *ref)
{
    const char *start = ref;
    char part[256];

    for (;;) {
        const char *slash = strchr(start, '/');
        size_t len = slash ? (size_t)(slash - start) : strlen(start);
        if (len >= sizeof(part))
            return 0;
        memcpy(part, start, len);
        part[len] = '\0';
        if (!names_is_valid(part))
            return 0;
        if (!slash)
            return 1;
        start = slash + 1;
    }
}

int names_split(char *path, char **parts, int max)
{
    int n = 0;
    if (path[0] == '\0')
        return 0;
    for (char *p = path;;) {
        if (n == max)
            return -ENAMETOOLONG;
        parts[n++] = p;
        char *slash = strchr(p, '/');
        if (!slash)
            return n;
        *slash = '\0';
        p = slash + 1;
    }
}

char *names_join(char *const *parts, int from, int to)
{
    size_t len = 1;
    for (int i = from; i < to; i++)
        len += strlen(parts[i]) + 1;
    char *out = malloc(len);
    if (!out)
        return NULL;
    char *w = out;
    for (int i = from; i < to; i++) {
        if (i > from)
            *w++ = '/';
        size_t l = strlen(parts[i]);
        memcpy(w, parts[i], l);
        w += l;
    }
    *w = '\0';
    return out;
}
