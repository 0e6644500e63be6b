/* linein.h - lines of a file or of standard input, read in chunks as they arrive (linein.c).
 *
 * A line ends at "\n" (a trailing "\r" is removed); the last line of the input may lack the "\n".
 * A UTF-8 BOM at the very start is skipped. pr_lines_next hands out one line at a time; when no
 * complete line is buffered it reads more, or - when told not to wait - first asks poll() whether
 * more input is there, so an interactive caller can answer the lines it has before blocking.
 */
#ifndef TB_PREDICT_LINEIN_H
#define TB_PREDICT_LINEIN_H

#include <stddef.h>
#include <stdint.h>

typedef struct pr_lines {
    int fd;
    int own_fd;          /* 1: opened here, closed by pr_lines_close */
    char name[4096];     /* the path, or "stdin": for messages */
    char *buf;
    size_t pos, len, cap;
    int eof;
    int64_t lineno;      /* 1-based number of the last line handed out */
} pr_lines;

/* Opens `path` ("-": standard input). */
int pr_lines_open(pr_lines *r, const char *path);
void pr_lines_close(pr_lines *r);

/* The next line into s[0..n) (valid until the next call) with *got = 1. *got = 0 at the end of
 * the input, or when `wait` is 0 and no more input is available right now. Fails on a read error,
 * a line longer than 64 MiB, or SIGINT/SIGTERM (TB_EINTR). */
int pr_lines_next(pr_lines *r, int wait, const char **s, size_t *n, int *got);

#endif
