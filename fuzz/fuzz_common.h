/* fuzz_common.h - helpers shared by the libFuzzer targets (header-only; built by scripts/fuzz). */
#ifndef TB_FUZZ_COMMON_H
#define TB_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static inline void fuzz_require(int cond)
{
    if (!cond) abort();
}

/* The input as a file for decoders that take a path: one memfd per process, rewritten for each
 * input, named /proc/self/fd/N. Returns the path. */
static inline const char *fuzz_as_file(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("tb-fuzz", 0);
        fuzz_require(fd >= 0);
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    fuzz_require(ftruncate(fd, 0) == 0);
    fuzz_require(size == 0 || pwrite(fd, data, size, 0) == (ssize_t)size);
    return path;
}

/* The input as a NUL-terminated string (malloc'd; free it). */
static inline char *fuzz_as_text(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    fuzz_require(s != NULL);
    if (size) memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
