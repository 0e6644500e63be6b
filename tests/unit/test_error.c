/* Unit tests: tb_err_wrap joins a context and the last error with exactly one ": ", and the
 * message carries no source location (that is kept apart, for --log-level debug). */
#include <criterion/criterion.h>

#include "tb/base/error.h"

#include <string.h>

Test(error, wrap_adds_one_separator)
{
    TB_ERR(TB_EINVAL, "bad value");
    cr_assert_eq(tb_err_wrap(TB_EINVAL, "message %d from %s", 0, "tcp://x:1"), TB_EINVAL);
    cr_assert_str_eq(tb_err_msg(), "message 0 from tcp://x:1: bad value");
}

Test(error, wrap_context_with_trailing_separator_is_not_doubled)
{
    TB_ERR(TB_EFORMAT, "x");
    tb_err_wrap(TB_EFORMAT, "message %d from %s: ", 0, "tcp://x:1");
    cr_assert_str_eq(tb_err_msg(), "message 0 from tcp://x:1: x");
}

Test(error, wrap_nests)
{
    TB_ERR(TB_EIO, "disk");
    tb_err_wrap(TB_EIO, "inner:");
    tb_err_wrap(TB_EIO, "outer");
    cr_assert_str_eq(tb_err_msg(), "outer: inner: disk");
}
