/* Unit tests: error messages are for the user. TB_ERR records what/where/what-to-do without our
 * C source location, which stays available (tb_err_origin) and is prefixed only at log level debug;
 * tb_err_wrap never produces ": :" (a context that ends in ": ") nor a dangling ": " (an empty
 * message). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "tb/base/error.h"
#include "tb/base/log.h"

TestSuite(errors, .init = tb_err_clear);

static int fail_at_line(int *line)
{
    *line = __LINE__ + 1;
    return TB_ERR(TB_EFORMAT, "%s:%d: field 'label' is empty (give a class name)", "train.tsv", 7);
}

Test(errors, message_has_no_source_location)
{
    tb_log_set_level(TB_LOG_INFO);
    int line = 0;
    cr_assert_eq(fail_at_line(&line), TB_EFORMAT);
    cr_expect_str_eq(tb_err_msg(), "train.tsv:7: field 'label' is empty (give a class name)");
    char origin[64];
    snprintf(origin, sizeof origin, "test_robust_errors.c:%d", line);
    cr_expect_str_eq(tb_err_origin(), origin);
}

Test(errors, debug_level_prefixes_the_source_location)
{
    tb_log_set_level(TB_LOG_DEBUG);
    int line = 0;
    fail_at_line(&line);
    tb_log_set_level(TB_LOG_INFO);
    char want[160];
    snprintf(want, sizeof want, "test_robust_errors.c:%d: train.tsv:7: field 'label' is empty (give a class name)",
             line);
    cr_expect_str_eq(tb_err_msg(), want);
}

Test(errors, wrap_with_a_trailing_colon_gives_one_separator)
{
    tb_log_set_level(TB_LOG_INFO);
    TB_ERR(TB_EINVAL, "bad number 'x'");
    tb_err_wrap(TB_EINVAL, "%s:%d: ", "data.tsv", 12);
    cr_expect_str_eq(tb_err_msg(), "data.tsv:12: bad number 'x'");
    tb_err_wrap(TB_EINVAL, "batch message:");
    cr_expect_str_eq(tb_err_msg(), "batch message: data.tsv:12: bad number 'x'");
    tb_err_wrap(TB_EINVAL, "while loading %s", "m");
    cr_expect_str_eq(tb_err_msg(), "while loading m: batch message: data.tsv:12: bad number 'x'");
    cr_expect_null(strstr(tb_err_msg(), ": :"));
}

Test(errors, wrap_of_an_empty_message_is_the_context_alone)
{
    tb_err_clear();
    cr_expect_eq(tb_err_wrap(TB_EIO, "reading %s: ", "f.bin"), TB_EIO);
    cr_expect_str_eq(tb_err_msg(), "reading f.bin");
    cr_expect_str_eq(tb_err_origin(), "");
}
