/* Unit tests: option tables, parsing and its errors, --help and --describe (parsed back with cJSON). */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb/base/cli.h"
#include "tb/base/error.h"

static const tb_port_field batch_fields[] = {
    {"input_ids", "<i4", "B,T", "token ids"},
    {"attention_mask", "|u1", "B,T", NULL},
    {0},
};
static const tb_port_field feature_fields[] = {
    {"teacher.hidden.*", "<f4", "B,T,H", "hidden states"},
    {0},
};

static const tb_opt opts[] = {
    TB_OPTION("input", TB_OPT_ENDPOINT, NULL, "token batches to read", .required = 1),
    TB_OPTION("output", TB_OPT_ENDPOINT, "ipc:///tmp/out", "features to write"),
    TB_OPTION("batch-size", TB_OPT_INT, "32", "examples per batch"),
    TB_OPTION("lr", TB_OPT_FLOAT, "5e-5", "learning rate"),
    TB_OPTION("name", TB_OPT_STRING, NULL, "a label"),
    TB_OPTION("fp16", TB_OPT_BOOL, "false", "send features as <f2"),
    TB_OPTION("mode", TB_OPT_ENUM, "general", "distillation step", .choices = "general|stage1|stage2"),
    {0},
};
static const tb_port inputs[] = {{.option = "input", .message = "batch", .fields = batch_fields, .help = "from tb-tokenize"},
                                 {0}};
static const tb_port outputs[] = {{.option = "output", .message = "features", .fields = feature_fields}, {0}};
static const tb_stage_info info = {.name = "tb-test", .summary = "a stage for tests", .opts = opts, .inputs = inputs,
                                   .outputs = outputs};

/* Parses a NULL-terminated list of arguments (argv[0] added). */
static int parse(tb_cli *cli, const tb_stage_info *si, const char **args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"tb-test";
    for (int i = 0; args[i]; i++) argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    return tb_cli_parse(cli, si, argc, argv);
}

static void expect_error(const char **args, const char *needle)
{
    tb_cli cli;
    int rc = parse(&cli, &info, args);
    cr_expect_eq(rc, TB_EINVAL, "expected EINVAL for '%s ...', got %d", args[0], rc);
    cr_expect(strstr(tb_err_msg(), needle) != NULL, "error '%s' should contain '%s'", tb_err_msg(), needle);
    tb_cli_free(&cli);
}

Test(cli, defaults_and_values)
{
    tb_cli cli;
    const char *args[] = {"--input", "ipc:///tmp/x", "--batch-size=7", "--lr", "0.25", "--fp16", "--mode", "stage2",
                          "--seed", "-3", NULL};
    cr_assert_eq(parse(&cli, &info, args), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(cli.action, TB_CLI_RUN);
    cr_expect_str_eq(tb_cli_str(&cli, "input"), "ipc:///tmp/x");
    cr_expect_str_eq(tb_cli_str(&cli, "output"), "ipc:///tmp/out"); /* default */
    cr_expect_eq(tb_cli_int(&cli, "batch-size"), 7);
    cr_expect_eq(tb_cli_float(&cli, "lr"), 0.25);
    cr_expect_eq(tb_cli_bool(&cli, "fp16"), 1);
    cr_expect_str_eq(tb_cli_str(&cli, "mode"), "stage2");
    cr_expect_eq(tb_cli_enum_index(&cli, "mode"), 2);
    cr_expect_null(tb_cli_str(&cli, "name"));
    cr_expect_eq(tb_cli_int(&cli, "seed"), -3);
    cr_expect_eq(tb_cli_int(&cli, "threads"), 0);
    cr_expect_str_eq(tb_cli_str(&cli, "log-level"), "info");
    cr_expect_str_eq(tb_cli_str(&cli, "progress"), "auto");
    cr_expect_null(tb_cli_str(&cli, "metrics"));
    cr_expect(tb_cli_given(&cli, "batch-size"));
    cr_expect(!tb_cli_given(&cli, "output"));
    tb_cli_free(&cli);
}

Test(cli, defaults_only_and_last_wins)
{
    tb_cli cli;
    const char *args[] = {"--input", "a.msgs", "--batch-size", "1", "--batch-size", "9", "--fp16", "--no-fp16",
                          "--metrics", "-", NULL};
    cr_assert_eq(parse(&cli, &info, args), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(tb_cli_int(&cli, "batch-size"), 9);
    cr_expect_eq(tb_cli_int(&cli, "batch-size"), 9);
    cr_expect_eq(tb_cli_bool(&cli, "fp16"), 0);
    cr_expect_eq(tb_cli_float(&cli, "lr"), 5e-5);
    cr_expect_str_eq(tb_cli_str(&cli, "metrics"), "-");
    tb_cli_free(&cli);
}

Test(cli, bool_spellings)
{
    const char *yes[] = {"true", "1", "yes", "on"}, *no[] = {"false", "0", "no", "off"};
    for (int k = 0; k < 4; k++) {
        char a[32], b[32];
        snprintf(a, sizeof a, "--fp16=%s", yes[k]);
        snprintf(b, sizeof b, "--fp16=%s", no[k]);
        tb_cli cli;
        const char *args1[] = {"--input", "x", a, NULL};
        cr_assert_eq(parse(&cli, &info, args1), TB_OK, "%s", tb_err_msg());
        cr_expect_eq(tb_cli_bool(&cli, "fp16"), 1, "%s", a);
        tb_cli_free(&cli);
        const char *args2[] = {"--input", "x", b, NULL};
        cr_assert_eq(parse(&cli, &info, args2), TB_OK, "%s", tb_err_msg());
        cr_expect_eq(tb_cli_bool(&cli, "fp16"), 0, "%s", b);
        tb_cli_free(&cli);
    }
}

Test(cli, errors_name_the_option)
{
    expect_error((const char *[]){"--input", "x", "--batch-size", "x", NULL}, "--batch-size: 'x' is not an integer");
    expect_error((const char *[]){"--input", "x", "--batch-size", "12abc", NULL}, "'12abc' is not an integer");
    expect_error((const char *[]){"--input", "x", "--batch-size", "99999999999999999999", NULL}, "out of range");
    expect_error((const char *[]){"--input", "x", "--lr", "fast", NULL}, "--lr: 'fast' is not a number");
    expect_error((const char *[]){"--input", "x", "--lr", "inf", NULL}, "not a finite number");
    expect_error((const char *[]){"--input", "x", "--lr=", NULL}, "--lr: '' is not a number");
    expect_error((const char *[]){"--input", "x", "--mode", "stage3", NULL},
                 "--mode: 'stage3' is not one of general|stage1|stage2");
    expect_error((const char *[]){"--input", "x", "--fp16=maybe", NULL}, "not a boolean");
    expect_error((const char *[]){"--input", "x", "--no-fp16=1", NULL}, "takes no value");
    expect_error((const char *[]){"--input", "x", "--batchsize", "3", NULL}, "unknown option '--batchsize'");
    expect_error((const char *[]){"--input", "x", "--no-mode", NULL}, "unknown option '--no-mode'");
    expect_error((const char *[]){"--input", "x", "--batch-size", NULL}, "--batch-size: missing value (expected an int)");
    expect_error((const char *[]){"--batch-size", "3", NULL}, "--input is required");
    expect_error((const char *[]){"--input", "x", "stray", NULL}, "unexpected argument 'stray'");
    expect_error((const char *[]){"--input", "x", "-b", "3", NULL}, "options are long");
    expect_error((const char *[]){"--input", "tcp://localhost", NULL}, "is not an endpoint");
    expect_error((const char *[]){"--input", "tcp://host:80x", NULL}, "is not an endpoint");
    expect_error((const char *[]){"--input", "udp://host:80", NULL}, "is not an endpoint");
    expect_error((const char *[]){"--input", "", NULL}, "is not an endpoint");
    expect_error((const char *[]){"--input", "x", "--log-level", "loud", NULL}, "--log-level: 'loud' is not one of");
    expect_error((const char *[]){"--input", "x", "--progress", "fancy", NULL}, "--progress: 'fancy'");
    expect_error((const char *[]){"--input", "x", "--threads", "two", NULL}, "--threads: 'two' is not an integer");
}

Test(cli, endpoints_accepted)
{
    const char *good[] = {"tcp://127.0.0.1:5555", "tcp://*:5555", "tcp://host:*", "ipc:///tmp/a.ipc", "inproc://x",
                          "file:///tmp/a.msgs", "relative/path.msgs", "-"};
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        tb_cli cli;
        const char *args[] = {"--input", good[k], NULL};
        cr_expect_eq(parse(&cli, &info, args), TB_OK, "'%s': %s", good[k], tb_err_msg());
        tb_cli_free(&cli);
    }
}

Test(cli, help_and_describe_win_over_errors)
{
    tb_cli cli;
    const char *args[] = {"--bogus", "--help", NULL};
    cr_assert_eq(parse(&cli, &info, args), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(cli.action, TB_CLI_HELP);
    tb_cli_free(&cli);
    const char *args2[] = {"--batch-size", "x", "--describe", NULL}; /* no --input either */
    cr_assert_eq(parse(&cli, &info, args2), TB_OK, "%s", tb_err_msg());
    cr_expect_eq(cli.action, TB_CLI_DESCRIBE);
    tb_cli_free(&cli);
    /* after "--", --help is an argument: a stage without arguments rejects it */
    const char *args3[] = {"--input", "x", "--", "--help", NULL};
    cr_expect_eq(parse(&cli, &info, args3), TB_EINVAL);
    tb_cli_free(&cli);
}

Test(cli, positional_arguments)
{
    static const tb_opt popts[] = {TB_OPTION("check", TB_OPT_BOOL, "false", "check only"), {0}};
    static const tb_stage_info pinfo = {.name = "tb-pos", .summary = "positional", .opts = popts,
                                        .args = "FILE [VAR=VALUE...]"};
    tb_cli cli;
    const char *args[] = {"file.pipe", "--check", "A=1", "--", "--B=2", NULL};
    cr_assert_eq(parse(&cli, &pinfo, args), TB_OK, "%s", tb_err_msg());
    cr_assert_eq(cli.nargs, 3);
    cr_expect_str_eq(cli.args[0], "file.pipe");
    cr_expect_str_eq(cli.args[1], "A=1");
    cr_expect_str_eq(cli.args[2], "--B=2");
    cr_expect_eq(tb_cli_bool(&cli, "check"), 1);
    tb_cli_free(&cli);
}

Test(cli, bad_tables_are_reported)
{
    struct {
        tb_opt opts[3];
        const char *needle;
    } cases[] = {
        {{TB_OPTION("Batch", TB_OPT_INT, "1", "x"), {0}}, "not valid"},
        {{TB_OPTION("no-cuda", TB_OPT_BOOL, NULL, "x"), {0}}, "not valid"},
        {{TB_OPTION("a", TB_OPT_INT, "1", "x"), TB_OPTION("a", TB_OPT_INT, "2", "y"), {0}}, "declared twice"},
        {{TB_OPTION("seed", TB_OPT_INT, "1", "x"), {0}}, "clashes with a common option"},
        {{TB_OPTION("n", TB_OPT_INT, "ten", "x"), {0}}, "the default of '--n' is invalid"},
        {{TB_OPTION("m", TB_OPT_ENUM, "a", "x"), {0}}, "needs choices"},
        {{TB_OPTION("m", TB_OPT_ENUM, "c", "x", .choices = "a|b"), {0}}, "the default of '--m' is invalid"},
        {{TB_OPTION("r", TB_OPT_STRING, "x", "x", .required = 1), {0}}, "required and has a default"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tb_stage_info bad = {.name = "tb-bad", .summary = "bad", .opts = cases[k].opts};
        cr_expect_eq(tb_cli_validate_info(&bad), TB_EINVAL, "case %zu accepted", k);
        cr_expect(strstr(tb_err_msg(), cases[k].needle) != NULL, "case %zu: '%s' lacks '%s'", k, tb_err_msg(),
                  cases[k].needle);
    }
    static const tb_port bad_ports[] = {{.option = "batch-size", .message = "batch"}, {0}};
    tb_stage_info bad = {.name = "tb-bad", .summary = "bad", .opts = opts, .inputs = bad_ports};
    cr_expect_eq(tb_cli_validate_info(&bad), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "not an endpoint or string option") != NULL, "%s", tb_err_msg());
    cr_expect_eq(tb_cli_validate_info(&info), TB_OK, "%s", tb_err_msg());
}

static char *capture(int (*fn)(const tb_stage_info *, FILE *), const tb_stage_info *si, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    *rc = fn(si, f);
    fclose(f);
    return buf;
}

Test(cli, help_text)
{
    int rc;
    char *text = capture(tb_cli_write_help, &info, &rc);
    cr_assert_eq(rc, TB_OK, "%s", tb_err_msg());
    cr_expect(strncmp(text, "Usage: tb-test [OPTIONS]\na stage for tests\n", 43) == 0, "%s", text);
    const char *needles[] = {"--input ENDPOINT", "token batches to read (required)", "--batch-size N",
                             "(default: 32)", "--mode general|stage1|stage2", "--threads N", "--seed N",
                             "--log-level debug|info|warn|error|quiet", "--metrics PATH|-",
                             "--progress auto|bar|plain|none", "--describe", "input_ids", "<i4[B,T]",
                             "teacher.hidden.*"};
    for (size_t k = 0; k < sizeof needles / sizeof needles[0]; k++)
        cr_expect(strstr(text, needles[k]) != NULL, "help lacks '%s':\n%s", needles[k], text);
    free(text);
}

static const cJSON *find_param(const cJSON *params, const char *name)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, params)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0) return it;
    }
    return NULL;
}

Test(cli, describe_is_json_with_every_field)
{
    int rc;
    char *text = capture(tb_cli_write_describe, &info, &rc);
    cr_assert_eq(rc, TB_OK, "%s", tb_err_msg());
    cJSON *root = cJSON_Parse(text);
    cr_assert_not_null(root, "describe is not JSON:\n%s", text);
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(root, "stage")->valuestring, "tb-test");
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(root, "summary")->valuestring, "a stage for tests");
    cr_expect(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root, "args")));
    const cJSON *proto = cJSON_GetObjectItemCaseSensitive(root, "protocol"); /* docs/protocol.md: version 1 */
    cr_expect(cJSON_IsNumber(proto) && proto->valuedouble == 1, "\"protocol\" should be 1 in:\n%s", text);

    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    cr_assert_eq(cJSON_GetArraySize(in), 1);
    const cJSON *port = cJSON_GetArrayItem(in, 0);
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(port, "option")->valuestring, "input");
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(port, "message")->valuestring, "batch");
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(port, "fields");
    cr_assert_eq(cJSON_GetArraySize(fields), 2);
    const cJSON *f1 = cJSON_GetArrayItem(fields, 1);
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(f1, "name")->valuestring, "attention_mask");
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(f1, "dtype")->valuestring, "|u1");
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(f1, "shape")->valuestring, "B,T");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(root, "outputs");
    cr_assert_eq(cJSON_GetArraySize(out), 1);
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(out, 0), "message")->valuestring, "features");

    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    cr_assert_eq(cJSON_GetArraySize(params), 7 + 5, "7 stage options + 5 common ones");
    const cJSON *p = find_param(params, "batch-size");
    cr_assert_not_null(p);
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(p, "type")->valuestring, "int");
    cr_expect(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(p, "default")));
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(p, "default")->valuedouble, 32.0);
    cr_expect(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(p, "required")));
    cr_expect(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(p, "common")));
    p = find_param(params, "lr");
    cr_expect_eq(cJSON_GetObjectItemCaseSensitive(p, "default")->valuedouble, 5e-5);
    p = find_param(params, "input");
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "required")));
    cr_expect(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(p, "default")));
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(p, "type")->valuestring, "endpoint");
    p = find_param(params, "fp16");
    cr_expect(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(p, "default")));
    p = find_param(params, "mode");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(p, "choices");
    cr_assert_eq(cJSON_GetArraySize(ch), 3);
    cr_expect_str_eq(cJSON_GetArrayItem(ch, 1)->valuestring, "stage1");
    p = find_param(params, "threads");
    cr_assert_not_null(p);
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "common")));
    const char *common[] = {"seed", "log-level", "metrics", "progress"};
    for (int k = 0; k < 4; k++) cr_expect_not_null(find_param(params, common[k]), "%s missing", common[k]);
    cJSON_Delete(root);
    free(text);
}

/* tb_cli_stage_start answers --describe on stdout and returns 0; a usage error returns 2. */
Test(cli, stage_start_describe_and_usage_error)
{
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1); /* no re-exec of the test binary */
    fflush(stdout);
    char path[] = "/tmp/tb-test-cli-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    int saved = dup(STDOUT_FILENO);
    dup2(fd, STDOUT_FILENO);
    tb_cli cli;
    char *argv1[] = {(char *)"tb-test", (char *)"--describe", NULL};
    int code = tb_cli_stage_start(&cli, &info, 2, argv1);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    cr_expect_eq(code, 0);
    FILE *f = fdopen(fd, "r");
    fseek(f, 0, SEEK_SET);
    char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(path);
    cJSON *root = cJSON_Parse(buf);
    cr_expect_not_null(root, "not JSON: %s", buf);
    cJSON_Delete(root);

    char *argv2[] = {(char *)"tb-test", (char *)"--input", (char *)"x", (char *)"--batch-size", (char *)"x", NULL};
    code = tb_cli_stage_start(&cli, &info, 5, argv2);
    cr_expect_eq(code, 2);
    char *argv3[] = {(char *)"tb-test", (char *)"--input", (char *)"x", (char *)"--threads", (char *)"2",
                     (char *)"--log-level", (char *)"warn", NULL};
    code = tb_cli_stage_start(&cli, &info, 7, argv3);
    cr_expect_eq(code, -1);
    tb_cli_free(&cli);
}

/* Random command lines from a pool of good and bad pieces: each parses or fails with a message
 * (and never crashes; CI runs this under ASan/UBSan). */
Test(cli, random_command_lines)
{
    const char *pool[] = {"--input", "x", "--batch-size", "12", "--batch-size=", "-1", "--lr", "1e-3", "--lr=nan",
                          "--fp16", "--no-fp16", "--fp16=", "--mode", "stage1", "--mode=", "--", "-", "--=",
                          "---", "--threads", "99999999999999999999999", "--metrics", "", "--seed=7", "tcp://h:1",
                          "--input=tcp://", "--name", "--describe"};
    const int npool = (int)(sizeof pool / sizeof pool[0]);
    uint32_t x = 2463534242u;
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 4000; iter++) {
        char *argv[12];
        int argc = 0;
        argv[argc++] = (char *)"tb-test";
        int n = 1 + iter % 10;
        for (int k = 0; k < n; k++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            argv[argc++] = (char *)pool[x % (uint32_t)npool];
        }
        argv[argc] = NULL;
        tb_cli cli;
        if (tb_cli_parse(&cli, &info, argc, argv) == TB_OK) ok++;
        else {
            bad++;
            cr_assert(strlen(tb_err_msg()) > 0);
        }
        tb_cli_free(&cli);
    }
    cr_expect_gt(ok, 0);
    cr_expect_gt(bad, 0);
}
