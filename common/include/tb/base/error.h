/* tb/base/error.h - error codes and the thread-local "last error" message.
 *
 * Every libtb function that can fail returns a tb_status (TB_OK == 0). On failure it has
 * recorded, with TB_ERR, a message that says what was wrong, where (file, line, field) and,
 * when it can, what to do. libtb never prints to stdout and never exits.
 *
 *   int rc = TB_OK;
 *   TB_CHECK(n > 0, TB_EINVAL, "batch size must be > 0, got %d", n);
 *   ...
 * error:
 *   return rc;
 */
#ifndef TB_ERROR_H
#define TB_ERROR_H

#include <stdarg.h>

typedef enum tb_status {
    TB_OK = 0,
    TB_EINVAL,    /* invalid argument or option */
    TB_ENOMEM,    /* allocation failed */
    TB_EIO,       /* file or socket I/O failed */
    TB_EFORMAT,   /* malformed input: file, message, config */
    TB_ESHAPE,    /* tensor shape / dtype mismatch */
    TB_ETIMEOUT,  /* a peer did not answer in time */
    TB_EPEER,     /* a peer reported an error or broke the protocol */
    TB_EINTR,     /* interrupted by SIGINT / SIGTERM */
    TB_ENOTFOUND, /* a named item (tensor, field, file) is missing */
    TB_EEND,      /* end of stream (not an error for readers that expect it) */
    TB_EUNSUPPORTED,
    TB_STATUS_COUNT
} tb_status;

/* Short name of a status ("EINVAL", ...). */
const char *tb_status_name(int status);

/* Records `fmt` as the thread's last error, prefixed by "file:line: ", and returns `status`. */
int tb_err_set(int status, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int tb_err_vset(int status, const char *file, int line, const char *fmt, va_list ap);

/* Prepends context to the thread's last error as "<context>: <error>"; returns `status`. A
 * trailing ':' or blank of the context is dropped, so "x" and "x: " give the same text. */
int tb_err_wrap(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The thread's last error message ("" when none). Valid until the next tb_err_* call. */
const char *tb_err_msg(void);
void tb_err_clear(void);

#define TB_ERR(status, ...) tb_err_set((status), __FILE__, __LINE__, __VA_ARGS__)

/* Requires `int rc` and an `error:` label in the calling function. */
#define TB_CHECK(cond, status, ...)                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            rc = TB_ERR((status), __VA_ARGS__);                                       \
            goto error;                                                               \
        }                                                                             \
    } while (0)

/* Propagates a failing call's status (its message is already recorded). */
#define TB_TRY(call)                                                                  \
    do {                                                                              \
        rc = (call);                                                                  \
        if (rc != TB_OK) goto error;                                                  \
    } while (0)

#endif
