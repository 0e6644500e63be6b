/* Unit tests: tb_err_wrap joins a context and the last error with exactly one ": ". */
#include <criterion/criterion.h>

#include "tb/base/error.h"

#include <string.h>

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* the text after TB_ERR's "file:line: " */
static const char *after_location(const char *msg)
{
    const char *p = strstr(msg, "test_error.c:");
    cr_assert(p, "no location in '%s'", msg);
    p = strchr(p + strlen("test_error.c:"), ':');
    cr_assert(p && p[1] == ' ', "no ': ' after the line in '%s'", msg);
    return p + 2;
}

Test(error, wrap_adds_one_separator)
{
    TB_ERR(TB_EINVAL, "bad value");
    cr_assert_eq(tb_err_wrap(TB_EINVAL, "message %d from %s", 0, "tcp://x:1"), TB_EINVAL);
    const char *m = tb_err_msg();
    cr_assert(starts_with(m, "message 0 from tcp://x:1: test_error.c:"), "got '%s'", m);
    cr_assert_str_eq(after_location(m), "bad value");
}

Test(error, wrap_context_with_trailing_separator_is_not_doubled)
{
    TB_ERR(TB_EFORMAT, "x");
    tb_err_wrap(TB_EFORMAT, "message %d from %s: ", 0, "tcp://x:1");
    const char *m = tb_err_msg();
    cr_assert_null(strstr(m, ": :"), "doubled separator in '%s'", m);
    cr_assert(starts_with(m, "message 0 from tcp://x:1: test_error.c:"), "got '%s'", m);
}

Test(error, wrap_nests)
{
    TB_ERR(TB_EIO, "disk");
    tb_err_wrap(TB_EIO, "inner:");
    tb_err_wrap(TB_EIO, "outer");
    cr_assert(starts_with(tb_err_msg(), "outer: inner: test_error.c:"), "got '%s'", tb_err_msg());
}
