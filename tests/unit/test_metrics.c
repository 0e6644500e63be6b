/* Unit tests: JSON-lines metrics, checked by exact text and by parsing the lines back with cJSON. */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tb/base/error.h"
#include "tb/base/metrics.h"

Test(metrics, exact_line)
{
    char *line = NULL;
    tb_metric f[] = {TB_MF("loss", 0.5f), TB_MF("lr", 1e-4), TB_MI("n", -7), TB_MB("ok", 1), TB_MS("s", "a\"b\n\\\x01"),
                     TB_MS("none", NULL)};
    cr_assert_eq(tb_metrics_format("tb-x", "step", 3, 1.5, f, 6, &line), TB_OK, "%s", tb_err_msg());
    cr_expect_str_eq(line, "{\"stage\":\"tb-x\",\"event\":\"step\",\"step\":3,\"time\":1.500,\"loss\":0.5,"
                           "\"lr\":0.0001,\"n\":-7,\"ok\":true,\"s\":\"a\\\"b\\n\\\\\\u0001\",\"none\":null}");
    free(line);
    /* step < 0 is left out; float values take 9 significant digits (0.1f = 0.100000001490116...) */
    tb_metric g[] = {TB_MF("x", 0.1f), TB_MF("third", 1.0f / 3.0f), TB_MF("big", 16777217.0), TB_MF("neg0", -0.0)};
    cr_assert_eq(tb_metrics_format("s", "eval", -1, 2.0, g, 4, &line), TB_OK, "%s", tb_err_msg());
    cr_expect_str_eq(line, "{\"stage\":\"s\",\"event\":\"eval\",\"time\":2.000,\"x\":0.100000001,"
                           "\"third\":0.333333343,\"big\":16777217,\"neg0\":-0}");
    free(line);
}

Test(metrics, nonfinite_is_null_with_a_flag)
{
    char *line = NULL;
    tb_metric f[] = {TB_MF("loss", NAN), TB_MF("a", 1.0), TB_MF("g", INFINITY), TB_MF("h", -INFINITY)};
    cr_assert_eq(tb_metrics_format("s", "step", 0, 0.0, f, 4, &line), TB_OK, "%s", tb_err_msg());
    cr_expect_str_eq(line, "{\"stage\":\"s\",\"event\":\"step\",\"step\":0,\"time\":0.000,\"loss\":null,\"a\":1,"
                           "\"g\":null,\"h\":null,\"nonfinite\":{\"loss\":\"nan\",\"g\":\"inf\",\"h\":\"-inf\"}}");
    cJSON *o = cJSON_Parse(line);
    cr_assert_not_null(o, "not JSON: %s", line);
    cr_expect(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "loss")));
    cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "nonfinite"), "h")->valuestring,
                     "-inf");
    cJSON_Delete(o);
    free(line);
}

Test(metrics, bad_fields_are_errors)
{
    char *line = NULL;
    tb_metric dup[] = {TB_MF("a", 1), TB_MI("a", 2)};
    cr_expect_eq(tb_metrics_format("s", "e", 0, 0, dup, 2, &line), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "'a' given twice"), "%s", tb_err_msg());
    tb_metric res[] = {TB_MI("step", 2)};
    cr_expect_eq(tb_metrics_format("s", "e", 0, 0, res, 1, &line), TB_EINVAL);
    cr_expect(strstr(tb_err_msg(), "reserved"), "%s", tb_err_msg());
    tb_metric nokey[] = {TB_MI(NULL, 2)};
    cr_expect_eq(tb_metrics_format("s", "e", 0, 0, nokey, 1, &line), TB_EINVAL);
    cr_expect_eq(tb_metrics_format("s", "", 0, 0, NULL, 0, &line), TB_EINVAL);
    cr_expect_eq(tb_metrics_format("s", "e", 0, 0, NULL, 2, &line), TB_EINVAL);
    cr_expect_null(line);
}

Test(metrics, file_lines_parse_back_and_floats_round_trip)
{
    char dir[] = "/tmp/tb-test-metrics-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/m.jsonl", dir);
    tb_metrics m;
    cr_assert_eq(tb_metrics_open(&m, "tb-distill", path), TB_OK, "%s", tb_err_msg());
    cr_expect(tb_metrics_enabled(&m));
    enum { N = 500 };
    static float vals[N];
    unsigned s = 12345u;
    for (int i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        uint32_t bits = s;
        memcpy(&vals[i], &bits, 4);
        if (!isfinite(vals[i])) vals[i] = (float)i * 1e-3f;
        tb_metric f[] = {TB_MF("loss", vals[i]), TB_MI("i", i), TB_MS("split", "train")};
        cr_assert_eq(tb_metrics_write(&m, "step", i, f, 3), TB_OK, "%s", tb_err_msg());
    }
    tb_metrics_close(&m);
    /* appending: a second writer adds lines after the first */
    cr_assert_eq(tb_metrics_open(&m, "tb-distill", path), TB_OK);
    cr_assert_eq(tb_metrics_write(&m, "end", -1, NULL, 0), TB_OK, "%s", tb_err_msg());
    tb_metrics_close(&m);

    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        cr_assert(len > 0 && line[len - 1] == '\n', "line %d not terminated", n);
        cJSON *o = cJSON_Parse(line);
        cr_assert_not_null(o, "line %d is not JSON: %s", n, line);
        cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(o, "stage")->valuestring, "tb-distill");
        cr_expect(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "time")));
        if (n < N) {
            cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(o, "event")->valuestring, "step");
            cr_expect_eq(cJSON_GetObjectItemCaseSensitive(o, "step")->valuedouble, n);
            cr_expect_eq(cJSON_GetObjectItemCaseSensitive(o, "i")->valuedouble, n);
            /* strtod of the text, rounded to float, must give back the same bits */
            const char *key = strstr(line, "\"loss\":") + 7;
            float back = (float)strtod(key, NULL);
            cr_expect(memcmp(&back, &vals[n], 4) == 0, "line %d: %.9g != %.9g", n, (double)back, (double)vals[n]);
        } else {
            cr_expect_str_eq(cJSON_GetObjectItemCaseSensitive(o, "event")->valuestring, "end");
            cr_expect_null(cJSON_GetObjectItemCaseSensitive(o, "step"));
        }
        cJSON_Delete(o);
        n++;
    }
    fclose(f);
    cr_expect_eq(n, N + 1);
    unlink(path);
    rmdir(dir);
}

Test(metrics, disabled_and_open_errors)
{
    tb_metrics m;
    cr_assert_eq(tb_metrics_open(&m, "s", NULL), TB_OK);
    cr_expect(!tb_metrics_enabled(&m));
    cr_expect_eq(tb_metrics_write(&m, "step", 1, NULL, 0), TB_OK);
    tb_metrics_close(&m);
    cr_expect_eq(tb_metrics_open(&m, "s", "/nonexistent-dir-tb/m.jsonl"), TB_EIO);
    cr_expect(strstr(tb_err_msg(), "/nonexistent-dir-tb/m.jsonl"), "%s", tb_err_msg());
    tb_metrics_close(&m);
}

Test(metrics, python_json_reads_the_lines)
{
    char dir[] = "/tmp/tb-test-metrics-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256], cmd[1024];
    snprintf(path, sizeof path, "%s/m.jsonl", dir);
    tb_metrics m;
    cr_assert_eq(tb_metrics_open(&m, "tb-eval", path), TB_OK);
    tb_metric f[] = {TB_MF("acc", 0.875f), TB_MF("bad", NAN), TB_MS("note", "tab\there \xc3\xa9")};
    cr_assert_eq(tb_metrics_write(&m, "eval", 10, f, 3), TB_OK);
    tb_metrics_close(&m);
    snprintf(cmd, sizeof cmd,
             TB_PYTHON " -c \"import json,sys; o=json.loads(open('%s').readline()); "
                       "sys.exit(0 if (o['acc']==0.875 and o['bad'] is None and o['nonfinite']=={'bad':'nan'} "
                       "and o['note']=='tab\\there \\u00e9' and o['step']==10) else 1)\"",
             path);
    cr_expect_eq(system(cmd), 0, "python's json does not read the line back as written");
    unlink(path);
    rmdir(dir);
}
