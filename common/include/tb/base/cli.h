/* tb/base/cli.h - the command line every stage shares, from one declarative option table.
 *
 * A stage declares what it is (name, summary), what it reads and writes (ports: the option that
 * carries the endpoint, the message kind, and the tensor fields expected or produced) and its
 * parameters. From that one table come:
 *   --help        usage text on stdout
 *   --describe    JSON on stdout (stage, summary, inputs, outputs, parameters), so a runner or a
 *                 person can check a pipeline before running it (see docs/stages.md)
 *   parsing       --name VALUE or --name=VALUE; booleans as --name, --no-name or --name=true|false;
 *                 clear errors: unknown option, missing value, "--batch-size: 'x' is not an integer"
 * and the options every stage has:
 *   --threads N (0: default, see tb/base/threads.h)   --seed N   --log-level debug|info|warn|error|quiet
 *   --metrics PATH|- (JSON lines, see tb/base/metrics.h)   --progress auto|bar|plain|none
 *
 *   static const tb_opt opts[] = {
 *       TB_OPTION("input", TB_OPT_ENDPOINT, NULL, "token batches to read", .required = 1),
 *       TB_OPTION("batch-size", TB_OPT_INT, "32", "examples per batch"),
 *       TB_OPTION("mode", TB_OPT_ENUM, "general", "distillation step", .choices = "general|stage1|stage2"),
 *       {0}};
 *   static const tb_stage_info info = {.name = "tb-distill", .summary = "distils a student", .opts = opts, ...};
 *   int main(int argc, char **argv) {
 *       tb_cli cli;
 *       int code = tb_cli_stage_start(&cli, &info, argc, argv);
 *       if (code >= 0) return code;      // --help, --describe or a usage error: done
 *       int64_t bs = tb_cli_int(&cli, "batch-size");
 *       ...
 *       tb_cli_free(&cli);
 *   }
 * A repeated option: the last one wins. Endpoints are tcp://, ipc://, inproc:// or file://
 * URLs, or a plain path (a file of messages).
 */
#ifndef TB_CLI_H
#define TB_CLI_H

#include <stdint.h>
#include <stdio.h>

typedef enum tb_opt_type {
    TB_OPT_INT = 0,   /* int64, decimal */
    TB_OPT_FLOAT,     /* finite double */
    TB_OPT_STRING,
    TB_OPT_BOOL,
    TB_OPT_ENUM,      /* one of .choices ("a|b|c"); the value is the string */
    TB_OPT_ENDPOINT,  /* tcp://, ipc://, inproc://, file:// or a path */
} tb_opt_type;

typedef struct tb_opt {
    const char *name;     /* long name without "--": lower case, digits, '-' */
    tb_opt_type type;
    const char *def;      /* default, as it would be typed; NULL: none */
    const char *help;
    int required;         /* must be given (a default then makes no sense) */
    const char *choices;  /* TB_OPT_ENUM: "a|b|c" */
    const char *metavar;  /* shown in --help ("N", "PATH"); NULL: from the type */
    int ranged;           /* TB_OPT_INT: values outside [min, max] are a usage error (TB_RANGE) */
    int64_t min, max;
} tb_opt;

/* The inclusive range of an integer option: TB_OPTION("batch-size", TB_OPT_INT, "32", "...", TB_RANGE(1, 65536)).
 * Every integer option of a stage has one (tests/unit/test_robust_cli.c checks each stage's --describe). */
#define TB_RANGE(lo, hi) .ranged = 1, .min = (lo), .max = (hi)

/* A table entry with designated fields, so -Wextra does not ask for every field:
 * TB_OPTION(name, type, default, help[, .required = 1][, .choices = "a|b"][, .metavar = "N"][, TB_RANGE(lo, hi)]) */
#define TB_OPTION(n, t, d, h, ...) {.name = (n), .type = (t), .def = (d), .help = (h), __VA_ARGS__}

/* One tensor (or scalar) field of a message. */
typedef struct tb_port_field {
    const char *name;     /* "input_ids", "teacher.hidden.*" */
    const char *dtype;    /* numpy type string: "<i4", "<f4", "|u1"; or "int", "str" for scalars */
    const char *shape;    /* symbolic: "B,T", "B,T,H"; "" for scalars */
    const char *help;
} tb_port_field;

/* An input or output of the stage: the option holding its endpoint and what travels on it. */
typedef struct tb_port {
    const char *option;   /* an option of type ENDPOINT/STRING in opts, e.g. "input" */
    const char *message;  /* message kind: "batch", "features", "text", "checkpoint", "metrics" */
    const tb_port_field *fields;  /* terminated by {0}; NULL: none declared */
    const char *help;
} tb_port;

typedef struct tb_stage_info {
    const char *name;     /* "tb-distill" */
    const char *summary;  /* one line */
    const tb_opt *opts;   /* terminated by {0} */
    const tb_port *inputs;   /* terminated by {0}; NULL: none */
    const tb_port *outputs;  /* terminated by {0}; NULL: none */
    const char *args;     /* positional arguments in usage ("FILE [VAR=VALUE...]"); NULL: none allowed */
    const char *details;  /* extra paragraphs for --help; NULL: none */
} tb_stage_info;

typedef enum tb_cli_action { TB_CLI_RUN = 0, TB_CLI_HELP, TB_CLI_DESCRIBE } tb_cli_action;

typedef struct tb_cli_value {
    const tb_opt *opt;
    int given;            /* on the command line */
    const char *text;     /* as given, or the default (NULL: none) */
    int64_t i;            /* INT, BOOL */
    double f;             /* FLOAT */
} tb_cli_value;

typedef struct tb_cli {
    const tb_stage_info *info;
    tb_cli_action action;
    tb_cli_value *values; /* the stage's options, then the common ones */
    int count;
    char **args;          /* positional arguments (pointers into argv) */
    int nargs;
} tb_cli;

/* The options every stage has (after the stage's own in --help and --describe). */
extern const tb_opt tb_cli_common_opts[];

/* Checks the table itself (names, duplicates, defaults that parse, enum choices, ports naming
 * existing options): a stage author's mistake is reported, not hidden. tb_cli_parse calls it. */
int tb_cli_validate_info(const tb_stage_info *info);

/* Parses argv[1..argc-1]. On --help/--describe sets cli->action and stops checking required
 * options. On error cli is still freeable and the message names the option. */
int tb_cli_parse(tb_cli *cli, const tb_stage_info *info, int argc, char **argv);
void tb_cli_free(tb_cli *cli);

/* Values by option name. The name must be in the table (else the process logs an error and
 * gets 0 / NULL - a programming error that the stage's own tests catch). */
int64_t tb_cli_int(const tb_cli *cli, const char *name);
double tb_cli_float(const tb_cli *cli, const char *name);
const char *tb_cli_str(const tb_cli *cli, const char *name); /* STRING/ENUM/ENDPOINT; NULL: unset */
int tb_cli_bool(const tb_cli *cli, const char *name);
int tb_cli_given(const tb_cli *cli, const char *name);       /* given on the command line */
/* Index of `value` in the ENUM option's choices, or -1. */
int tb_cli_enum_index(const tb_cli *cli, const char *name);

/* Usage text / describe JSON, written to `out` (stdout in a stage). */
int tb_cli_write_help(const tb_stage_info *info, FILE *out);
int tb_cli_write_describe(const tb_stage_info *info, FILE *out);
/* The describe JSON as a malloc'd string (free with free()). */
int tb_cli_describe_json(const tb_stage_info *info, char **out);

/* Everything a stage's main does first, in order: re-executes with OMP_WAIT_POLICY=PASSIVE if
 * unset (tb/base/threads.h), parses, answers --help/--describe on stdout, reports a usage error on
 * stderr, applies --log-level (and the log name), --threads, and installs the signal handlers.
 * Returns -1 when the stage should run, otherwise the exit code to return from main: 0 after
 * --help/--describe, 2 on a usage error, 1 when setting up failed. */
int tb_cli_stage_start(tb_cli *cli, const tb_stage_info *info, int argc, char **argv);

/* Exit codes shared by every stage (docs/stages.md). */
enum { TB_EXIT_OK = 0, TB_EXIT_FAILURE = 1, TB_EXIT_USAGE = 2, TB_EXIT_INTERRUPTED = 130 };

#endif
