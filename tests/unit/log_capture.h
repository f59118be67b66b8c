/*
 * log_capture.h - reading back what the code under test logs (header-only,
 * for unit tests; include after cmocka.h).
 *
 * capture_start() points stderr at a temporary file, capture_end() points
 * it back and returns what was written. cmocka reports failures on stderr
 * too: keep assertions out of a captured stretch, or their message is lost.
 */
#ifndef BBFS_TESTS_LOG_CAPTURE_H
#define BBFS_TESTS_LOG_CAPTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct capture {
    FILE *file;
    int saved;
};

__attribute__((unused)) static void capture_start(struct capture *c)
{
    fflush(stderr);
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved = dup(2);
    dup2(fileno(c->file), 2);
}

/* Returns the captured text (malloc'd) and restores stderr. */
__attribute__((unused)) static char *capture_end(struct capture *c)
{
    long len;
    char *text;

    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    len = lseek(fileno(c->file), 0, SEEK_END);
    text = calloc(1, (size_t)len + 1);
    assert_non_null(text);
    if (len > 0)
        assert_int_equal(pread(fileno(c->file), text, (size_t)len, 0), len);
    fclose(c->file);
    return text;
}

#endif
