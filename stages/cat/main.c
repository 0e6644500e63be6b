/* tb-cat: prints what is in a message file or flows on an endpoint (docs/stages.md, tb-cat). */
#include "cat.h"

#include "tb/base/cli.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/signals.h"
#include "tb/wire/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const tb_opt opts[] = {
    TB_OPTION("input", TB_OPT_ENDPOINT, NULL, "a message file to replay, or an endpoint to read as a consumer",
              .required = 1),
    TB_OPTION("json", TB_OPT_BOOL, "false", "one JSON object a line (each message, then the end) for tools"),
    TB_OPTION("stats", TB_OPT_BOOL, "true", "tensor statistics: min, max, mean, std, NaN and Inf counts"),
    TB_OPTION("max", TB_OPT_INT, "0", "stop after N messages (0: until the end); on a live stream this leaves "
              "before the end, which a producer under the 'fail' policy treats as a dead consumer", .metavar = "N"),
    TB_OPTION("consumer-id", TB_OPT_STRING, NULL, "consumer id on a live stream (default tb-cat-<pid>)", .metavar = "ID"),
    TB_OPTION("stream-id", TB_OPT_STRING, "main", "stream id", .metavar = "ID"),
    TB_OPTION("resume", TB_OPT_INT, "0", "first sequence number wanted", .metavar = "N"),
    TB_OPTION("hello", TB_OPT_STRING, NULL, "application fields of the hello, KEY=VALUE;KEY=VALUE (an integer "
              "when VALUE is one, a string otherwise or when quoted: KEY=\"7\"), e.g. "
              "features.student_layers=2;features.hidden=0,3", .metavar = "FIELDS"),
    TB_OPTION("credit", TB_OPT_INT, "4", "messages the producer may send ahead"),
    TB_OPTION("peer-timeout-ms", TB_OPT_INT, "10000", "a producer silent this long is dead"),
    {0},
};

static const tb_port inputs[] = {{.option = "input", .message = "*", .help = "any tinybert-c message stream"}, {0}};

static const tb_stage_info info = {
    .name = "tb-cat",
    .summary = "Prints the messages of a message file or a live stream: kinds, fields, dtypes, shapes, tensor "
               "statistics, counts.",
    .opts = opts,
    .inputs = inputs,
    .details = "On a live endpoint tb-cat is a consumer like any other (its own id, its own credit, acknowledging\n"
               "each message as it prints it); the producer must expect it (e.g. tb-emit --students counts it).\n"
               "--json prints one object a line: {\"seq\",\"msg\",\"fields\":[{\"name\",\"kind\",\"value\"} or\n"
               "{\"name\",\"kind\":\"tensor\",\"dtype\",\"shape\",\"bytes\",\"stats\"}]}, then {\"end\":true,\"count\":N,...}.",
};

/* Parses "k=v;k=v" into hello fields (ints when the whole value parses as one, unless quoted). */
static int parse_hello(const char *spec, tb_msg *out)
{
    int rc = TB_OK;
    char *copy = strdup(spec), *save = NULL;
    TB_CHECK(copy, TB_ENOMEM, "out of memory");
    for (char *item = strtok_r(copy, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(item, '=');
        TB_CHECK(eq && eq != item, TB_EINVAL, "--hello: '%s' is not KEY=VALUE", item);
        *eq = '\0';
        char *val = eq + 1, *end = NULL;
        size_t vn = strlen(val);
        if (vn >= 2 && val[0] == '"' && val[vn - 1] == '"') {
            val[vn - 1] = '\0';
            TB_TRY(tb_msg_set_str(out, item, val + 1));
            continue;
        }
        long long v = strtoll(eq + 1, &end, 10);
        if (eq[1] && end && *end == '\0') TB_TRY(tb_msg_set_int(out, item, v));
        else TB_TRY(tb_msg_set_str(out, item, eq + 1));
    }
error:
    free(copy);
    return rc;
}

static int cat(const tb_cli *cli)
{
    int rc = TB_OK, json = tb_cli_bool(cli, "json"), stats = tb_cli_bool(cli, "stats");
    int64_t max = tb_cli_int(cli, "max"), n = 0;
    uint64_t tensor_bytes = 0;
    const char *input = tb_cli_str(cli, "input");
    char id[64];
    tb_stream *s = NULL;
    tb_msg m, hello;
    tb_strbuf b = {0};
    tb_msg_init(&m);
    tb_msg_init(&hello);
    tb_stream_opts o;
    tb_stream_opts_default(&o);
    snprintf(id, sizeof id, "tb-cat-%ld", (long)getpid());
    o.consumer_id = tb_cli_str(cli, "consumer-id") ? tb_cli_str(cli, "consumer-id") : id;
    o.stream_id = tb_cli_str(cli, "stream-id");
    o.resume_from = (uint64_t)tb_cli_int(cli, "resume");
    o.credit = (int)tb_cli_int(cli, "credit");
    o.peer_timeout_ms = (int)tb_cli_int(cli, "peer-timeout-ms");
    TB_CHECK(tb_cli_int(cli, "resume") >= 0 && max >= 0, TB_EINVAL, "--resume and --max must be >= 0");
    if (tb_cli_str(cli, "hello")) {
        TB_TRY(parse_hello(tb_cli_str(cli, "hello"), &hello));
        o.hello = &hello;
    }
    TB_TRY(tb_stream_open(&s, input, TB_STREAM_READ, &o));
    while (max == 0 || n < max) {
        rc = tb_stream_recv(s, &m, -1);
        if (rc == TB_EEND) break;
        if (rc) goto error;
        b.len = 0;
        for (int i = 0; i < m.count; i++)
            if (m.fields[i].kind == TB_VAL_TENSOR) tensor_bytes += tb_tensor_nbytes(&m.fields[i].v.tensor);
        if (json) {
            TB_TRY(tb_cat_format_json(&m, stats, &b));
            TB_TRY(tb_strbuf_puts(&b, "\n"));
        } else {
            const tb_field *seq = tb_msg_find(&m, "seq");
            TB_TRY(tb_strbuf_printf(&b, "message %lld: %d fields\n", seq && seq->kind == TB_VAL_INT ? (long long)seq->v.i : -1LL,
                                    m.count));
            TB_TRY(tb_cat_format_text(&m, stats, &b));
        }
        fwrite(b.p, 1, b.len, stdout);
        fflush(stdout);
        tb_msg_free(&m);
        n++;
    }
    rc = TB_OK;
    int complete = max == 0 || n < max;
    if (json)
        printf("{\"end\":%s,\"count\":%lld,\"tensor_bytes\":%llu}\n", complete ? "true" : "false", (long long)n,
               (unsigned long long)tensor_bytes);
    else
        printf("%s after %lld messages, %llu tensor bytes\n", complete ? "end" : "stopped (--max)", (long long)n,
               (unsigned long long)tensor_bytes);
    fflush(stdout);
error:
    if (rc) tb_err_wrap(rc, "tb-cat: reading %s", input);
    tb_msg_free(&m);
    tb_msg_free(&hello);
    tb_strbuf_free(&b);
    tb_stream_close(s);
    return rc;
}

int main(int argc, char **argv)
{
    tb_cli cli;
    int code = tb_cli_stage_start(&cli, &info, argc, argv);
    if (code >= 0) return code;
    int rc = cat(&cli);
    if (rc) TB_ERROR("%s", tb_err_msg());
    code = tb_signals_pending() ? TB_EXIT_INTERRUPTED : rc ? TB_EXIT_FAILURE : TB_EXIT_OK;
    tb_cli_free(&cli);
    return code;
}
