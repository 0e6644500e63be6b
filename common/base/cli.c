/* cli.c - option tables: parsing, --help, --describe, and the common stage start-up. */
#include "tb/base/cli.h"

#include "tb/base/endpoint.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/protocol.h"
#include "tb/base/signals.h"
#include "tb/base/threads.h"

#include <cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const tb_opt tb_cli_common_opts[] = {
    TB_OPTION("threads", TB_OPT_INT, "0", "threads for BLIS and OpenMP; 0: TB_THREADS or every available core",
              .metavar = "N", TB_RANGE(0, 4096)),
    TB_OPTION("seed", TB_OPT_INT, "42", "random seed (data order, dropout, initialisation)", .metavar = "N",
              TB_RANGE(INT64_MIN, INT64_MAX)),
    TB_OPTION("log-level", TB_OPT_ENUM, "info", "messages on stderr at or above this level",
              .choices = "debug|info|warn|error|quiet"),
    TB_OPTION("metrics", TB_OPT_STRING, NULL, "append metrics as JSON lines to PATH ('-': stdout)", .metavar = "PATH|-"),
    TB_OPTION("progress", TB_OPT_ENUM, "auto", "progress on stderr: a bar on a terminal, plain lines otherwise",
              .choices = "auto|bar|plain|none"),
    {0},
};

static const char *const cli_type_names[] = {"int", "float", "string", "bool", "enum", "endpoint"};

/* ---- table checks ------------------------------------------------------------------------ */

static int cli_opt_count(const tb_opt *opts)
{
    int n = 0;
    if (opts)
        while (opts[n].name) n++;
    return n;
}

static int cli_name_ok(const char *name)
{
    if (!name[0] || name[0] == '-') return 0;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-')) return 0;
    return strncmp(name, "no-", 3) != 0 && strcmp(name, "help") != 0 && strcmp(name, "describe") != 0;
}

/* Does `value` appear in "a|b|c"? Returns its index or -1. */
static int cli_choice_index(const char *choices, const char *value)
{
    size_t vlen = strlen(value);
    int idx = 0;
    for (const char *c = choices; c;) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == vlen && strncmp(c, value, len) == 0) return idx;
        idx++;
        c = bar ? bar + 1 : NULL;
    }
    return -1;
}

/* Parses `text` as opt's type into v. Errors name the option: "--batch-size: 'x' is not an integer". */
static int cli_parse_value(const tb_opt *opt, const char *text, tb_cli_value *v)
{
    v->text = text;
    switch (opt->type) {
    case TB_OPT_INT: {
        char *end = NULL;
        errno = 0;
        long long x = strtoll(text, &end, 10);
        if (!*text || *end != '\0')
            return TB_ERR(TB_EINVAL, "--%s: '%s' is not an integer", opt->name, text);
        if (errno == ERANGE)
            return TB_ERR(TB_EINVAL, "--%s: '%s' is out of range for a 64-bit integer", opt->name, text);
        if (opt->ranged && (x < opt->min || x > opt->max))
            return TB_ERR(TB_EINVAL, "--%s: %lld is out of range (%lld to %lld)", opt->name, x,
                          (long long)opt->min, (long long)opt->max);
        v->i = x;
        return TB_OK;
    }
    case TB_OPT_FLOAT: {
        char *end = NULL;
        errno = 0;
        double x = strtod(text, &end);
        if (!*text || *end != '\0') return TB_ERR(TB_EINVAL, "--%s: '%s' is not a number", opt->name, text);
        if (!isfinite(x) || errno == ERANGE)
            return TB_ERR(TB_EINVAL, "--%s: '%s' is not a finite number in double range", opt->name, text);
        v->f = x;
        return TB_OK;
    }
    case TB_OPT_BOOL:
        if (!strcmp(text, "true") || !strcmp(text, "1") || !strcmp(text, "yes") || !strcmp(text, "on")) v->i = 1;
        else if (!strcmp(text, "false") || !strcmp(text, "0") || !strcmp(text, "no") || !strcmp(text, "off")) v->i = 0;
        else return TB_ERR(TB_EINVAL, "--%s: '%s' is not a boolean (use true or false)", opt->name, text);
        return TB_OK;
    case TB_OPT_ENUM:
        if (cli_choice_index(opt->choices, text) < 0)
            return TB_ERR(TB_EINVAL, "--%s: '%s' is not one of %s", opt->name, text, opt->choices);
        return TB_OK;
    case TB_OPT_ENDPOINT:
        if (tb_endpoint_check(text) != TB_OK) return tb_err_wrap(TB_EINVAL, "--%s", opt->name);
        return TB_OK;
    case TB_OPT_STRING:
        return TB_OK;
    }
    return TB_ERR(TB_EINVAL, "--%s: unknown option type %d", opt->name, (int)opt->type);
}

static const tb_opt *cli_find_in(const tb_opt *opts, const char *name, size_t len)
{
    for (int i = 0; opts && opts[i].name; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0) return &opts[i];
    return NULL;
}

static int cli_validate_ports(const tb_stage_info *info, const tb_port *ports, const char *what)
{
    for (int p = 0; ports && ports[p].option; p++) {
        const tb_opt *o = cli_find_in(info->opts, ports[p].option, strlen(ports[p].option));
        if (!o || (o->type != TB_OPT_ENDPOINT && o->type != TB_OPT_STRING))
            return TB_ERR(TB_EINVAL, "%s: %s port %d names option '--%s', which is not an endpoint or string "
                          "option of the stage", info->name, what, p, ports[p].option);
        if (!ports[p].message || !*ports[p].message)
            return TB_ERR(TB_EINVAL, "%s: %s port '--%s' has no message kind", info->name, what, ports[p].option);
        for (int f = 0; ports[p].fields && ports[p].fields[f].name; f++)
            if (!ports[p].fields[f].dtype)
                return TB_ERR(TB_EINVAL, "%s: field '%s' of %s port '--%s' has no dtype", info->name,
                              ports[p].fields[f].name, what, ports[p].option);
    }
    return TB_OK;
}

static int cli_validate_opt(const tb_stage_info *info, const tb_opt *o)
{
    if (!cli_name_ok(o->name))
        return TB_ERR(TB_EINVAL, "%s: option name '%s' is not valid (lower case letters, digits and '-'; not "
                      "starting with 'no-' or '-'; not help/describe)", info->name, o->name);
    if ((unsigned)o->type > TB_OPT_ENDPOINT)
        return TB_ERR(TB_EINVAL, "%s: option '--%s' has unknown type %d", info->name, o->name, (int)o->type);
    if (o->type == TB_OPT_ENUM) {
        if (!o->choices || !*o->choices || strstr(o->choices, "||") || o->choices[0] == '|' ||
            o->choices[strlen(o->choices) - 1] == '|')
            return TB_ERR(TB_EINVAL, "%s: enum option '--%s' needs choices like \"a|b|c\"", info->name, o->name);
    }
    if (o->ranged && (o->type != TB_OPT_INT || o->min > o->max))
        return TB_ERR(TB_EINVAL, "%s: option '--%s' has a range, but %s", info->name, o->name,
                      o->type != TB_OPT_INT ? "is not an integer option" : "its minimum exceeds its maximum");
    if (o->required && o->def)
        return TB_ERR(TB_EINVAL, "%s: option '--%s' is required and has a default; choose one", info->name, o->name);
    if (o->def) {
        tb_cli_value v = {0};
        if (cli_parse_value(o, o->def, &v) != TB_OK)
            return tb_err_wrap(TB_EINVAL, "%s: the default of '--%s' is invalid", info->name, o->name);
    }
    return TB_OK;
}

int tb_cli_validate_info(const tb_stage_info *info)
{
    if (!info || !info->name || !*info->name) return TB_ERR(TB_EINVAL, "stage info without a name");
    if (!info->summary) return TB_ERR(TB_EINVAL, "%s: stage info without a summary", info->name);
    int n = cli_opt_count(info->opts);
    for (int i = 0; i < n; i++) {
        const tb_opt *o = &info->opts[i];
        int rc = cli_validate_opt(info, o);
        if (rc != TB_OK) return rc;
        if (cli_find_in(info->opts, o->name, strlen(o->name)) != o ||
            cli_find_in(tb_cli_common_opts, o->name, strlen(o->name)))
            return TB_ERR(TB_EINVAL, "%s: option '--%s' is declared twice (or clashes with a common option)",
                          info->name, o->name);
    }
    int rc = cli_validate_ports(info, info->inputs, "input");
    if (rc == TB_OK) rc = cli_validate_ports(info, info->outputs, "output");
    return rc;
}

/* ---- parsing ----------------------------------------------------------------------------- */

static tb_cli_value *cli_lookup(const tb_cli *cli, const char *name, size_t len)
{
    for (int i = 0; i < cli->count; i++)
        if (strlen(cli->values[i].opt->name) == len && strncmp(cli->values[i].opt->name, name, len) == 0)
            return &cli->values[i];
    return NULL;
}

static int cli_load_defaults(tb_cli *cli)
{
    int nstage = cli_opt_count(cli->info->opts), ncommon = cli_opt_count(tb_cli_common_opts);
    cli->values = calloc((size_t)(nstage + ncommon), sizeof *cli->values);
    if (!cli->values) return TB_ERR(TB_ENOMEM, "out of memory for %d option values", nstage + ncommon);
    for (int i = 0; i < nstage + ncommon; i++) {
        tb_cli_value *v = &cli->values[cli->count++];
        v->opt = i < nstage ? &cli->info->opts[i] : &tb_cli_common_opts[i - nstage];
        if (v->opt->def) {
            int rc = cli_parse_value(v->opt, v->opt->def, v);
            if (rc != TB_OK) return rc;
        }
    }
    return TB_OK;
}

/* Looks for --help / --describe before any other check, so they work whatever else is wrong. */
static tb_cli_action cli_scan_action(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return TB_CLI_HELP;
        if (strcmp(argv[i], "--describe") == 0) return TB_CLI_DESCRIBE;
    }
    return TB_CLI_RUN;
}

static int cli_add_arg(tb_cli *cli, char *arg, int max)
{
    if (!cli->info->args)
        return TB_ERR(TB_EINVAL, "unexpected argument '%s' (%s takes only --options; see --help)", arg,
                      cli->info->name);
    if (!cli->args) {
        cli->args = calloc((size_t)max, sizeof *cli->args);
        if (!cli->args) return TB_ERR(TB_ENOMEM, "out of memory for %d arguments", max);
    }
    cli->args[cli->nargs++] = arg;
    return TB_OK;
}

static int cli_parse_option(tb_cli *cli, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    tb_cli_value *v = cli_lookup(cli, name, len);
    if (!v && len > 3 && strncmp(name, "no-", 3) == 0) {
        tb_cli_value *b = cli_lookup(cli, name + 3, len - 3);
        if (b && b->opt->type == TB_OPT_BOOL) {
            if (eq) return TB_ERR(TB_EINVAL, "--%.*s takes no value", (int)len, name);
            b->given = 1;
            b->text = "false";
            b->i = 0;
            return TB_OK;
        }
    }
    if (!v)
        return TB_ERR(TB_EINVAL, "unknown option '--%.*s' (see %s --help for the options)", (int)len, name,
                      cli->info->name);
    const char *value = eq ? eq + 1 : NULL;
    if (!value && v->opt->type == TB_OPT_BOOL) value = "true";
    if (!value) {
        if (*i + 1 >= argc)
            return TB_ERR(TB_EINVAL, "--%s: missing value (expected %s %s)", v->opt->name,
                          v->opt->type == TB_OPT_INT ? "an" : "a", cli_type_names[v->opt->type]);
        value = argv[++*i];
    }
    v->given = 1;
    return cli_parse_value(v->opt, value, v);
}

int tb_cli_parse(tb_cli *cli, const tb_stage_info *info, int argc, char **argv)
{
    int rc = TB_OK;
    memset(cli, 0, sizeof *cli);
    cli->info = info;
    TB_TRY(tb_cli_validate_info(info));
    TB_TRY(cli_load_defaults(cli));
    cli->action = cli_scan_action(argc, argv);
    if (cli->action != TB_CLI_RUN) return TB_OK;
    int only_args = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_args || a[0] != '-' || strcmp(a, "-") == 0) {
            TB_TRY(cli_add_arg(cli, a, argc));
        } else if (strcmp(a, "--") == 0) {
            only_args = 1;
        } else if (a[1] != '-') {
            TB_CHECK(0, TB_EINVAL, "'%s': options are long, like --threads 4 (see %s --help)", a, info->name);
        } else {
            TB_TRY(cli_parse_option(cli, argc, argv, &i));
        }
    }
    for (int k = 0; k < cli->count; k++) {
        const tb_opt *o = cli->values[k].opt;
        TB_CHECK(!o->required || cli->values[k].given, TB_EINVAL, "--%s is required (%s)", o->name,
                 o->help ? o->help : "see --help");
    }
error:
    return rc;
}

void tb_cli_free(tb_cli *cli)
{
    free(cli->values);
    free(cli->args);
    memset(cli, 0, sizeof *cli);
}

/* ---- getters ----------------------------------------------------------------------------- */

static const tb_cli_value *cli_get(const tb_cli *cli, const char *name, int type_mask)
{
    const tb_cli_value *v = cli_lookup(cli, name, strlen(name));
    if (!v) {
        TB_ERROR("internal: %s asked for option '--%s', which is not in its table", cli->info ? cli->info->name : "?", name);
        return NULL;
    }
    if (!(type_mask & (1 << v->opt->type))) {
        TB_ERROR("internal: option '--%s' is of type %s, read as another type", name, cli_type_names[v->opt->type]);
        return NULL;
    }
    return v;
}

int64_t tb_cli_int(const tb_cli *cli, const char *name)
{
    const tb_cli_value *v = cli_get(cli, name, 1 << TB_OPT_INT);
    return v ? v->i : 0;
}

double tb_cli_float(const tb_cli *cli, const char *name)
{
    const tb_cli_value *v = cli_get(cli, name, 1 << TB_OPT_FLOAT | 1 << TB_OPT_INT);
    if (!v) return 0.0;
    return v->opt->type == TB_OPT_INT ? (double)v->i : v->f;
}

const char *tb_cli_str(const tb_cli *cli, const char *name)
{
    const tb_cli_value *v = cli_get(cli, name, 1 << TB_OPT_STRING | 1 << TB_OPT_ENUM | 1 << TB_OPT_ENDPOINT);
    return v ? v->text : NULL;
}

int tb_cli_bool(const tb_cli *cli, const char *name)
{
    const tb_cli_value *v = cli_get(cli, name, 1 << TB_OPT_BOOL);
    return v ? (int)v->i : 0;
}

int tb_cli_given(const tb_cli *cli, const char *name)
{
    const tb_cli_value *v = cli_get(cli, name, 0x3f);
    return v ? v->given : 0;
}

int tb_cli_enum_index(const tb_cli *cli, const char *name)
{
    const tb_cli_value *v = cli_get(cli, name, 1 << TB_OPT_ENUM);
    return v && v->text ? cli_choice_index(v->opt->choices, v->text) : -1;
}

/* ---- --help ------------------------------------------------------------------------------ */

static void cli_help_opt(FILE *out, const tb_opt *o)
{
    char left[128];
    const char *meta = o->metavar;
    if (!meta) {
        static const char *const metas[] = {"N", "X", "TEXT", NULL, NULL, "ENDPOINT"};
        meta = o->type == TB_OPT_ENUM ? o->choices : metas[o->type];
    }
    if (meta) snprintf(left, sizeof left, "  --%s %s", o->name, meta);
    else snprintf(left, sizeof left, "  --%s", o->name);
    fprintf(out, "%-30s", left);
    if (strlen(left) >= 30) fprintf(out, "\n%-30s", "");
    fprintf(out, "%s", o->help ? o->help : "");
    if (o->required) fprintf(out, " (required)");
    else if (o->def && o->type != TB_OPT_BOOL) fprintf(out, " (default: %s)", o->def);
    else if (o->def && cli_choice_index("true|1|yes|on", o->def) >= 0) fprintf(out, " (default: on)");
    if (o->ranged && o->max == INT64_MAX && o->min > INT64_MIN) fprintf(out, " (>= %lld)", (long long)o->min);
    else if (o->ranged && o->max < INT64_MAX) fprintf(out, " (%lld to %lld)", (long long)o->min, (long long)o->max);
    fputc('\n', out);
}

static void cli_help_ports(FILE *out, const char *title, const tb_port *ports)
{
    if (!ports || !ports[0].option) return;
    fprintf(out, "\n%s:\n", title);
    for (int p = 0; ports[p].option; p++) {
        fprintf(out, "  --%s: '%s' messages", ports[p].option, ports[p].message);
        if (ports[p].help) fprintf(out, " - %s", ports[p].help);
        fputc('\n', out);
        for (int f = 0; ports[p].fields && ports[p].fields[f].name; f++) {
            const tb_port_field *fl = &ports[p].fields[f];
            fprintf(out, "      %-24s %s", fl->name, fl->dtype);
            if (fl->shape && *fl->shape) fprintf(out, "[%s]", fl->shape);
            if (fl->help) fprintf(out, "  %s", fl->help);
            fputc('\n', out);
        }
    }
}

int tb_cli_write_help(const tb_stage_info *info, FILE *out)
{
    int rc = tb_cli_validate_info(info);
    if (rc != TB_OK) return rc;
    fprintf(out, "Usage: %s [OPTIONS]%s%s\n%s\n", info->name, info->args ? " " : "", info->args ? info->args : "",
            info->summary);
    if (info->opts && info->opts[0].name) {
        fprintf(out, "\nOptions:\n");
        for (int i = 0; info->opts[i].name; i++) cli_help_opt(out, &info->opts[i]);
    }
    fprintf(out, "\nCommon options:\n");
    for (int i = 0; tb_cli_common_opts[i].name; i++) cli_help_opt(out, &tb_cli_common_opts[i]);
    fprintf(out, "%-30s%s\n%-30s%s\n", "  --help", "this text", "  --describe",
            "inputs, outputs and parameters as JSON");
    cli_help_ports(out, "Inputs", info->inputs);
    cli_help_ports(out, "Outputs", info->outputs);
    if (info->details) fprintf(out, "\n%s\n", info->details);
    fprintf(out, "\nValues: --name VALUE or --name=VALUE; booleans: --name, --no-name, --name=false.\n"
                 "Exit status: 0 when all input was processed, 1 on failure, 2 on a usage error, 130 when "
                 "interrupted.\n");
    if (fflush(out) != 0 || ferror(out)) return TB_ERR(TB_EIO, "%s: cannot write the help text", info->name);
    return TB_OK;
}

/* ---- --describe -------------------------------------------------------------------------- */

static cJSON *cli_describe_default(const tb_opt *o)
{
    if (!o->def) return cJSON_CreateNull();
    tb_cli_value v = {0};
    cli_parse_value(o, o->def, &v); /* validated already */
    switch (o->type) {
    case TB_OPT_INT: return cJSON_CreateNumber((double)v.i);
    case TB_OPT_FLOAT: return cJSON_CreateNumber(v.f);
    case TB_OPT_BOOL: return cJSON_CreateBool((int)v.i);
    default: return cJSON_CreateString(o->def);
    }
}

static int cli_describe_opt(cJSON *arr, const tb_opt *o, int common)
{
    cJSON *p = cJSON_CreateObject();
    if (!p || !cJSON_AddItemToArray(arr, p)) {
        cJSON_Delete(p);
        return TB_ENOMEM;
    }
    cJSON_AddStringToObject(p, "name", o->name);
    cJSON_AddStringToObject(p, "type", cli_type_names[o->type]);
    cJSON_AddItemToObject(p, "default", cli_describe_default(o));
    cJSON_AddBoolToObject(p, "required", o->required != 0);
    if (o->ranged) {
        cJSON_AddNumberToObject(p, "min", (double)o->min);
        cJSON_AddNumberToObject(p, "max", (double)o->max);
    }
    cJSON_AddStringToObject(p, "help", o->help ? o->help : "");
    if (o->type == TB_OPT_ENUM) {
        cJSON *ch = cJSON_AddArrayToObject(p, "choices");
        for (const char *c = o->choices; c && ch;) {
            const char *bar = strchr(c, '|');
            size_t len = bar ? (size_t)(bar - c) : strlen(c);
            char item[128];
            snprintf(item, sizeof item, "%.*s", (int)(len < sizeof item ? len : sizeof item - 1), c);
            cJSON_AddItemToArray(ch, cJSON_CreateString(item));
            c = bar ? bar + 1 : NULL;
        }
    }
    cJSON_AddBoolToObject(p, "common", common != 0);
    return TB_OK;
}

static void cli_describe_ports(cJSON *root, const char *key, const tb_port *ports)
{
    cJSON *arr = cJSON_AddArrayToObject(root, key);
    for (int i = 0; arr && ports && ports[i].option; i++) {
        cJSON *p = cJSON_CreateObject();
        if (!p) return;
        cJSON_AddItemToArray(arr, p);
        cJSON_AddStringToObject(p, "option", ports[i].option);
        cJSON_AddStringToObject(p, "message", ports[i].message);
        cJSON_AddStringToObject(p, "help", ports[i].help ? ports[i].help : "");
        cJSON *fa = cJSON_AddArrayToObject(p, "fields");
        for (int f = 0; fa && ports[i].fields && ports[i].fields[f].name; f++) {
            const tb_port_field *fl = &ports[i].fields[f];
            cJSON *fo = cJSON_CreateObject();
            if (!fo) return;
            cJSON_AddItemToArray(fa, fo);
            cJSON_AddStringToObject(fo, "name", fl->name);
            cJSON_AddStringToObject(fo, "dtype", fl->dtype);
            cJSON_AddStringToObject(fo, "shape", fl->shape ? fl->shape : "");
            cJSON_AddStringToObject(fo, "help", fl->help ? fl->help : "");
        }
    }
}

int tb_cli_describe_json(const tb_stage_info *info, char **out)
{
    int rc = TB_OK;
    *out = NULL;
    cJSON *root = NULL;
    TB_TRY(tb_cli_validate_info(info));
    root = cJSON_CreateObject();
    TB_CHECK(root, TB_ENOMEM, "out of memory describing %s", info->name);
    cJSON_AddStringToObject(root, "stage", info->name);
    cJSON_AddStringToObject(root, "summary", info->summary);
    cJSON_AddNumberToObject(root, "protocol", TB_PROTOCOL_VERSION);
    if (info->args) cJSON_AddStringToObject(root, "args", info->args);
    else cJSON_AddNullToObject(root, "args");
    cli_describe_ports(root, "inputs", info->inputs);
    cli_describe_ports(root, "outputs", info->outputs);
    cJSON *params = cJSON_AddArrayToObject(root, "parameters");
    TB_CHECK(params, TB_ENOMEM, "out of memory describing %s", info->name);
    for (int i = 0; info->opts && info->opts[i].name; i++)
        TB_CHECK(cli_describe_opt(params, &info->opts[i], 0) == TB_OK, TB_ENOMEM, "out of memory describing %s",
                 info->name);
    for (int i = 0; tb_cli_common_opts[i].name; i++)
        TB_CHECK(cli_describe_opt(params, &tb_cli_common_opts[i], 1) == TB_OK, TB_ENOMEM,
                 "out of memory describing %s", info->name);
    *out = cJSON_Print(root);
    TB_CHECK(*out, TB_ENOMEM, "out of memory printing the description of %s", info->name);
error:
    cJSON_Delete(root);
    return rc;
}

int tb_cli_write_describe(const tb_stage_info *info, FILE *out)
{
    char *json = NULL;
    int rc = tb_cli_describe_json(info, &json);
    if (rc != TB_OK) return rc;
    fprintf(out, "%s\n", json);
    cJSON_free(json);
    if (fflush(out) != 0 || ferror(out)) return TB_ERR(TB_EIO, "%s: cannot write the description", info->name);
    return TB_OK;
}

/* ---- stage start-up ---------------------------------------------------------------------- */

int tb_cli_stage_start(tb_cli *cli, const tb_stage_info *info, int argc, char **argv)
{
    memset(cli, 0, sizeof *cli);
    int reexec_rc = tb_threads_passive_reexec(argv);
    char reexec_msg[512] = "";
    if (reexec_rc != TB_OK) snprintf(reexec_msg, sizeof reexec_msg, "%s", tb_err_msg());
    tb_log_set_name(info && info->name ? info->name : "tb");
    if (tb_cli_validate_info(info) != TB_OK) {
        fprintf(stderr, "%s: internal error in the option table: %s\n", info && info->name ? info->name : "tb",
                tb_err_msg());
        return TB_EXIT_FAILURE;
    }
    if (tb_cli_parse(cli, info, argc, argv) != TB_OK) {
        fprintf(stderr, "%s: %s\n", info->name, tb_err_msg());
        tb_cli_free(cli);
        return TB_EXIT_USAGE;
    }
    if (cli->action != TB_CLI_RUN) {
        int rc = cli->action == TB_CLI_HELP ? tb_cli_write_help(info, stdout) : tb_cli_write_describe(info, stdout);
        tb_cli_free(cli);
        if (rc != TB_OK) fprintf(stderr, "%s: %s\n", info->name, tb_err_msg());
        return rc == TB_OK ? TB_EXIT_OK : TB_EXIT_FAILURE;
    }
    tb_log_level level = TB_LOG_INFO;
    tb_log_parse_level(tb_cli_str(cli, "log-level"), &level); /* an enum: already checked */
    tb_log_set_level(level);
    if (reexec_msg[0]) TB_WARN("%s", reexec_msg);
    int64_t threads = tb_cli_int(cli, "threads"); /* 0..4096: its range */
    if (tb_threads_setup((int)threads) != TB_OK || tb_signals_install(0) != TB_OK) {
        fprintf(stderr, "%s: %s\n", info->name, tb_err_msg());
        tb_cli_free(cli);
        return TB_EXIT_FAILURE;
    }
    TB_DEBUG("%d threads, seed %lld", tb_threads_count(), (long long)tb_cli_int(cli, "seed"));
    return -1;
}
