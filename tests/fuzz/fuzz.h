/*
 * fuzz.h - what every fuzz target in tests/fuzz/ shares.
 *
 * A target defines only LLVMFuzzerTestOneInput(), so the same file links
 * against libFuzzer (clang, `make fuzz`) and against replay.c (any compiler,
 * `make fuzz-replay`, part of `make unit`). No other libFuzzer API is used.
 *
 * A target returns 0 for every input; a bug is a sanitizer report, a crash,
 * or fuzz_check() failing on an invariant the headers promise.
 */
#ifndef BBFS_TESTS_FUZZ_H
#define BBFS_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant that the code under test promises; abort() so every fuzzer sees a crash. */
#define fuzz_check(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
