/* Unit tests: endpoints are checked fully before anything binds or opens them (scheme, host,
 * port 1..65535 or '*', the Unix socket path limit, file paths), both by the option parser and by
 * tb_stream_open; integer options are checked against the range of their table entry. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb/base/cli.h"
#include "tb/base/endpoint.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/wire/stream.h"

static const tb_opt opts[] = {
    TB_OPTION("input", TB_OPT_ENDPOINT, "x.msgs", "messages to read"),
    TB_OPTION("num-labels", TB_OPT_INT, "0", "classes (0: from the data)", TB_RANGE(0, 1024)),
    TB_OPTION("timeout-ms", TB_OPT_INT, "-1", "-1: wait", TB_RANGE(-1, INT32_MAX)),
    TB_OPTION("free", TB_OPT_INT, "0", "no range"),
    {0},
};
static const tb_stage_info info = {.name = "tb-robust", .summary = "robustness checks", .opts = opts};

static int parse2(tb_cli *cli, const char *name, const char *value)
{
    char *argv[] = {"tb-robust", (char *)name, (char *)value, NULL};
    return tb_cli_parse(cli, &info, 3, argv);
}

static void expect_bad_endpoint(const char *ep, const char *needle)
{
    tb_cli cli;
    int rc = parse2(&cli, "--input", ep);
    cr_expect_eq(rc, TB_EINVAL, "'%s' was accepted", ep);
    char want[600];
    snprintf(want, sizeof want, "--input: '%s' is not an endpoint", ep);
    cr_expect(strncmp(tb_err_msg(), want, strlen(want)) == 0, "'%s': message '%s' should start with '%s'", ep,
              tb_err_msg(), want);
    cr_expect(strstr(tb_err_msg(), needle), "'%s': message '%s' should say '%s'", ep, tb_err_msg(), needle);
    tb_cli_free(&cli);
}

Test(robust_cli, ports_outside_1_to_65535_are_refused)
{
    expect_bad_endpoint("tcp://127.0.0.1:99999", "port '99999' is not 1..65535 or '*'");
    expect_bad_endpoint("tcp://127.0.0.1:65536", "port '65536'");
    expect_bad_endpoint("tcp://127.0.0.1:0", "port '0'");
    expect_bad_endpoint("tcp://127.0.0.1:-5", "port '-5'");
    expect_bad_endpoint("tcp://127.0.0.1:123456789012345678901234567890", "is not 1..65535");
    expect_bad_endpoint("tcp://127.0.0.1:", "port ''");
}

Test(robust_cli, hosts_and_schemes_are_checked)
{
    expect_bad_endpoint("tcp://:5555", "'' is not a host");
    expect_bad_endpoint("tcp://256.0.0.1:5555", "'256.0.0.1' is not a host");
    expect_bad_endpoint("tcp://1.2.3:5555", "'1.2.3' is not a host");
    expect_bad_endpoint("tcp://a b:5555", "'a b' is not a host");
    expect_bad_endpoint("tcp://[::1:5555", "no port");
    expect_bad_endpoint("tcp://5555", "no port");
    expect_bad_endpoint("udp://host:80", "unknown transport 'udp'");
    expect_bad_endpoint("ipc://", "no socket path");
    expect_bad_endpoint("inproc://", "no name");
    expect_bad_endpoint("file://", "no file path");
}

Test(robust_cli, good_endpoints_are_accepted)
{
    const char *good[] = {"tcp://127.0.0.1:1", "tcp://127.0.0.1:65535", "tcp://*:*", "tcp://localhost:5555",
                          "tcp://[::1]:5555", "tcp://eth0:5555", "ipc:///tmp/x.ipc", "ipc://@abstract",
                          "inproc://a", "file:///tmp/a.msgs", "file:rel.msgs", "rel/a.msgs"};
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        cr_expect_eq(tb_endpoint_check(good[k]), TB_OK, "'%s': %s", good[k], tb_err_msg());
        tb_cli cli;
        cr_expect_eq(parse2(&cli, "--input", good[k]), TB_OK, "'%s': %s", good[k], tb_err_msg());
        tb_cli_free(&cli);
    }
}

Test(robust_cli, ipc_paths_must_fit_a_unix_socket_address)
{
    char ep[200] = "ipc://", want[300];
    memset(ep + 6, 'a', 107); /* 107 bytes: the longest sun_path with its NUL */
    ep[6] = '/';
    ep[6 + 107] = '\0';
    cr_expect_eq(tb_endpoint_check(ep), TB_OK, "%s", tb_err_msg());
    ep[6 + 107] = 'a';
    ep[6 + 108] = '\0';
    snprintf(want, sizeof want, "the socket path has 108 bytes, a Unix socket path at most 107");
    expect_bad_endpoint(ep, want);
}

Test(robust_cli, file_paths_must_fit_path_max)
{
    static char ep[5000];
    memset(ep, 'd', 4200);
    ep[4200] = '\0';
    cr_expect_eq(tb_endpoint_check(ep), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "the path has 4200 bytes"), "%s", tb_err_msg());
}

Test(robust_cli, stream_open_refuses_a_bad_port_before_binding)
{
    tb_log_set_level(TB_LOG_QUIET);
    tb_stream *s = NULL;
    int rc = tb_stream_open(&s, "tcp://127.0.0.1:99999", TB_STREAM_WRITE, NULL);
    cr_expect_eq(rc, TB_EINVAL, "tcp://127.0.0.1:99999 was opened (rc %d)", rc);
    cr_expect_null(s);
    cr_expect(strstr(tb_err_msg(), "'tcp://127.0.0.1:99999' is not an endpoint: port '99999'"), "%s", tb_err_msg());
    rc = tb_stream_open(&s, "tcp://127.0.0.1:0", TB_STREAM_READ, NULL);
    cr_expect_eq(rc, TB_EINVAL);
    cr_expect_null(s);
}

Test(robust_cli, integers_outside_their_range_are_usage_errors)
{
    tb_cli cli;
    cr_expect_eq(parse2(&cli, "--num-labels", "-1"), TB_EINVAL);
    cr_expect_str_eq(tb_err_msg(), "--num-labels: -1 is out of range (0 to 1024)");
    tb_cli_free(&cli);
    cr_expect_eq(parse2(&cli, "--num-labels", "1025"), TB_EINVAL);
    cr_expect_str_eq(tb_err_msg(), "--num-labels: 1025 is out of range (0 to 1024)");
    tb_cli_free(&cli);
    cr_expect_eq(parse2(&cli, "--timeout-ms", "-2"), TB_EINVAL);
    cr_expect_str_eq(tb_err_msg(), "--timeout-ms: -2 is out of range (-1 to 2147483647)");
    tb_cli_free(&cli);
    cr_expect_eq(parse2(&cli, "--timeout-ms", "2147483648"), TB_EINVAL);
    tb_cli_free(&cli);
    const char *ok[][2] = {{"--num-labels", "0"}, {"--num-labels", "1024"}, {"--timeout-ms", "-1"},
                           {"--timeout-ms", "2147483647"}, {"--free", "-9000000000"}};
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
        cr_expect_eq(parse2(&cli, ok[k][0], ok[k][1]), TB_OK, "%s %s: %s", ok[k][0], ok[k][1], tb_err_msg());
        tb_cli_free(&cli);
    }
}

Test(robust_cli, a_range_on_a_non_integer_or_an_empty_range_is_a_table_error)
{
    static const tb_opt bad1[] = {TB_OPTION("x", TB_OPT_FLOAT, "1", "x", TB_RANGE(0, 1)), {0}};
    static const tb_opt bad2[] = {TB_OPTION("n", TB_OPT_INT, "1", "n", TB_RANGE(5, 1)), {0}};
    static const tb_opt bad3[] = {TB_OPTION("n", TB_OPT_INT, "0", "n", TB_RANGE(1, 5)), {0}};
    const tb_stage_info i1 = {.name = "t", .summary = "s", .opts = bad1}, i2 = {.name = "t", .summary = "s", .opts = bad2},
                        i3 = {.name = "t", .summary = "s", .opts = bad3};
    cr_expect_eq(tb_cli_validate_info(&i1), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "is not an integer option"), "%s", tb_err_msg());
    cr_expect_eq(tb_cli_validate_info(&i2), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "minimum exceeds its maximum"), "%s", tb_err_msg());
    cr_expect_eq(tb_cli_validate_info(&i3), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "the default of '--n' is invalid: --n: 0 is out of range (1 to 5)"), "%s",
              tb_err_msg());
}

Test(robust_cli, describe_shows_the_range)
{
    char *json = NULL;
    cr_assert_eq(tb_cli_describe_json(&info, &json), TB_OK, "%s", tb_err_msg());
    cr_expect(strstr(json, "\"min\":\t0") || strstr(json, "\"min\": 0"), "%s", json);
    cr_expect(strstr(json, "\"max\":\t1024") || strstr(json, "\"max\": 1024"), "%s", json);
    free(json);
}

Test(robust_cli, help_shows_the_range)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    cr_assert_not_null(out);
    cr_assert_eq(tb_cli_write_help(&info, out), TB_OK, "%s", tb_err_msg());
    fclose(out);
    cr_expect(strstr(buf, "classes (0: from the data) (default: 0) (0 to 1024)\n"), "%s", buf);
    cr_expect(strstr(buf, "-1: wait (default: -1) (-1 to 2147483647)\n"), "%s", buf);
    cr_expect(strstr(buf, "no range (default: 0)\n"), "%s", buf);
    free(buf);
}
