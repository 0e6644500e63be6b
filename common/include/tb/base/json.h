/* tb/base/json.h - a growable string buffer and JSON text helpers (cJSON parses; this writes lines
 * whose number formats we control, e.g. metrics with %.9g). */
#ifndef TB_JSON_H
#define TB_JSON_H

#include <stddef.h>

typedef struct tb_strbuf {
    char *p;      /* NUL-terminated when len > 0 or after any append; NULL when empty */
    size_t len, cap;
} tb_strbuf;

int tb_strbuf_append(tb_strbuf *b, const char *s, size_t n);
int tb_strbuf_puts(tb_strbuf *b, const char *s);
int tb_strbuf_printf(tb_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Takes the string (malloc'd, caller frees) and leaves the buffer empty. Never NULL on success. */
int tb_strbuf_take(tb_strbuf *b, char **out);
void tb_strbuf_free(tb_strbuf *b);

/* Appends `s` as a JSON string literal: quotes, \" \\ \n \r \t \b \f, other control bytes as
 * \u00XX. Bytes >= 0x80 pass through (UTF-8 in, UTF-8 out). NULL appends null. */
int tb_json_append_string(tb_strbuf *b, const char *s);

/* Appends a double as a JSON number with %.9g (exact for float values); non-finite: null. */
int tb_json_append_float(tb_strbuf *b, double v);

#endif
