/* lines.h - reading a text file as lines, for the readers (glue.c, corpus.c); not public. */
#ifndef TB_LINES_H
#define TB_LINES_H

#include <stddef.h>

/* Reads a whole file (NUL-terminated copy in *buf); skips nothing. */
int tb_lines_slurp(const char *path, char **buf, size_t *len);
/* Bytes of a UTF-8 byte order mark at the start of buf (3 or 0). */
size_t tb_lines_bom(const char *buf, size_t len);
/* Iterates the lines of buf from *pos, split on "\n" with one trailing "\r" removed: returns 0
 * at the end, else 1 with the line in (*line, *n). */
int tb_lines_next(const char *buf, size_t len, size_t *pos, const char **line, size_t *n);
/* 1 when s[0..n) is valid UTF-8 without NUL bytes; else 0 with the reason in msg. */
int tb_lines_valid(const char *s, size_t n, char *msg, size_t msgn);

#endif
