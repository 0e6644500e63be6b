/* tb-pipeline: runs, supervises and reports the stages of a pipeline file. */
#include "tb/base/cli.h"
#include "tb/base/error.h"
#include "tb/base/log.h"
#include "tb/base/metrics.h"
#include "pipeline.h"
#include "pipeline_resume.h"
#include "tb/base/signals.h"

#include <libgen.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const tb_opt opts[] = {
    TB_OPTION("check", TB_OPT_BOOL, "false", "check the pipeline (programs, --describe, options, links) and exit"),
    TB_OPTION("dry-run", TB_OPT_BOOL, "false", "print the plan (start order, threads, commands) and exit"),
    TB_OPTION("grace", TB_OPT_FLOAT, "5", "seconds between SIGTERM and SIGKILL when stopping the stages",
              .metavar = "SECONDS"),
    TB_OPTION("force", TB_OPT_BOOL, "false", "run every step, also those the state file says are up to date"),
    TB_OPTION("from", TB_OPT_STRING, NULL, "run this step and every step after it, whatever the state file says",
              .metavar = "STEP"),
    TB_OPTION("state", TB_OPT_STRING, NULL,
              "state file of the run, for skipping and resuming steps (default: ${PIPELINE_STATE}, else "
              "${RUN}/pipeline-state.json; \"\": none)", .metavar = "PATH"),
    TB_OPTION("bin-dir", TB_OPT_STRING, NULL, "where to look for tb-* programs first (default: this program's directory)",
              .metavar = "DIR"),
    TB_OPTION("only", TB_OPT_STRING, NULL, "run only these stages (comma separated); their `after` on the others is "
              "taken as done", .metavar = "STAGES"),
    {0},
};

static const tb_stage_info info = {
    .name = "tb-pipeline",
    .summary = "Runs the stages of a pipeline file as processes, streams to each other in parallel, `after` in "
               "order; stops them all when one fails.",
    .opts = opts,
    .args = "PIPELINE-FILE [VAR=VALUE...]",
    .details = "The pipeline file format is described in pipelines/README.md. Exit status: 0 when every stage\n"
               "exited 0; 1 when a stage failed (named on stderr with its exit status); 2 for a usage error\n"
               "or an invalid pipeline file; 130 when interrupted (SIGINT/SIGTERM are forwarded to the\n"
               "stages; a second SIGINT kills them at once). A rerun of the same command skips the steps that\n"
               "are up to date and resumes an interrupted training step (pipelines/README.md, \"Resuming\").",
};

/* The directory this executable is in, where the other tb-* stages are built or installed. */
static void self_dir(char *buf, size_t cap)
{
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    buf[0] = '\0';
    if (n <= 0) return;
    path[n] = '\0';
    snprintf(buf, cap, "%s", dirname(path));
}

/* One "stage" line per stage and a final "pipeline" line, when --metrics is given. */
static void write_metrics(tb_metrics *m, const tb_pipeline *p, const tb_pipeline_result *res, int rc)
{
    for (int i = 0; i < p->count; i++) {
        int st = res->wait_status[i], done = res->state[i] == TB_STAGE_DONE;
        tb_metric f[] = {
            TB_MS("name", p->stages[i].name),
            TB_MS("state", res->state[i] == TB_STAGE_SKIPPED ? "skipped"
                           : !done ? "not_started" : (WIFEXITED(st) && WEXITSTATUS(st) == 0) ? "ok"
                                                   : i == res->failed                    ? "failed"
                                                                                          : "stopped"),
            TB_MI("exit", done && WIFEXITED(st) ? WEXITSTATUS(st) : -1),
            TB_MI("signal", done && WIFSIGNALED(st) ? WTERMSIG(st) : 0),
            TB_MF("seconds", done ? res->seconds[i] : 0.0),
        };
        if (tb_metrics_write(m, "stage", -1, f, 5) != TB_OK) TB_WARN("%s", tb_err_msg());
    }
    tb_metric f[] = {TB_MS("file", p->origin), TB_MB("ok", rc == TB_OK), TB_MI("stages", p->count),
                     TB_MS("failed", res->failed >= 0 ? p->stages[res->failed].name : NULL),
                     TB_MB("interrupted", res->interrupted != 0)};
    if (tb_metrics_write(m, "pipeline", -1, f, 5) != TB_OK) TB_WARN("%s", tb_err_msg());
}

int main(int argc, char **argv)
{
    tb_metrics metrics = {0};
    tb_cli cli;
    int code = tb_cli_stage_start(&cli, &info, argc, argv);
    if (code >= 0) return code;
    tb_pipeline p = {0};
    tb_pipeline_session session = {0};
    int rc = TB_OK;
    char bin_dir[PATH_MAX];
    if (cli.nargs < 1) {
        fprintf(stderr, "tb-pipeline: give a pipeline file (see tb-pipeline --help)\n");
        code = TB_EXIT_USAGE;
        goto done;
    }
    if (tb_cli_float(&cli, "grace") < 0) {
        fprintf(stderr, "tb-pipeline: --grace must be >= 0 seconds\n");
        code = TB_EXIT_USAGE;
        goto done;
    }
    tb_signals_install(TB_SIGNALS_NO_HARD_KILL); /* the runner kills its stages before it dies */
    signal(SIGPIPE, SIG_IGN); /* a closed stderr must not kill the runner and orphan the stages */
    if (tb_pipeline_load(&p, cli.args[0], cli.args + 1, cli.nargs - 1) != TB_OK) {
        fprintf(stderr, "tb-pipeline: %s\n", tb_err_msg());
        code = TB_EXIT_USAGE;
        goto done;
    }
    if (tb_cli_str(&cli, "only") && tb_pipeline_select(&p, tb_cli_str(&cli, "only")) != TB_OK) {
        fprintf(stderr, "tb-pipeline: %s\n", tb_err_msg());
        code = TB_EXIT_USAGE;
        goto done;
    }
    if (tb_cli_str(&cli, "bin-dir")) snprintf(bin_dir, sizeof bin_dir, "%s", tb_cli_str(&cli, "bin-dir"));
    else self_dir(bin_dir, sizeof bin_dir);
    if (tb_cli_bool(&cli, "dry-run")) {
        tb_pipeline_resolve(&p, bin_dir); /* the plan is useful even with a program missing */
        code = tb_pipeline_write_plan(&p, stdout) == TB_OK ? TB_EXIT_OK : TB_EXIT_FAILURE;
        goto done;
    }
    int resolved = tb_pipeline_resolve(&p, bin_dir);
    if (tb_cli_bool(&cli, "check")) {
        if (resolved != TB_OK) fprintf(stderr, "tb-pipeline: %s\n", tb_err_msg());
        rc = tb_pipeline_check(&p, stdout);
        if (rc != TB_OK) fprintf(stderr, "tb-pipeline: %s\n", tb_err_msg());
        code = rc == TB_OK && resolved == TB_OK ? TB_EXIT_OK : TB_EXIT_FAILURE;
        goto done;
    }
    if (resolved != TB_OK) {
        fprintf(stderr, "tb-pipeline: %s\n", tb_err_msg());
        code = TB_EXIT_USAGE;
        goto done;
    }
    if (tb_metrics_open(&metrics, info.name, tb_cli_str(&cli, "metrics")) != TB_OK) {
        fprintf(stderr, "tb-pipeline: %s\n", tb_err_msg());
        code = TB_EXIT_USAGE;
        goto done;
    }
    char *state = tb_pipeline_state_path(&p, cli.args + 1, cli.nargs - 1, tb_cli_str(&cli, "state"));
    rc = tb_pipeline_session_open(&session, &p, state, tb_cli_bool(&cli, "force"), tb_cli_str(&cli, "from"));
    free(state);
    if (rc != TB_OK) {
        fprintf(stderr, "tb-pipeline: %s\n", tb_err_msg());
        code = TB_EXIT_USAGE;
        goto done;
    }
    tb_pipeline_run_opts ro = {.grace = tb_cli_float(&cli, "grace"), .log = stderr, .bin_dir = bin_dir};
    tb_pipeline_session_run_opts(&session, &ro);
    tb_pipeline_result res = {0};
    rc = tb_pipeline_run(&p, &ro, &res);
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", tb_err_msg());
    if (res.state) {
        fprintf(stderr, "tb-pipeline: %s:\n", p.origin);
        tb_pipeline_write_table(&p, &res, session.ports, session.have_state ? &session.plan : NULL, stderr);
        write_metrics(&metrics, &p, &res, rc);
    }
    tb_pipeline_result_free(&res);
    if (rc == TB_OK) {
        TB_INFO("pipeline finished: %d stage%s, all exited 0", p.count, p.count == 1 ? "" : "s");
        code = TB_EXIT_OK;
    } else {
        TB_ERROR("%s", msg);
        code = rc == TB_EINTR ? TB_EXIT_INTERRUPTED : TB_EXIT_FAILURE;
    }
done:
    if (session.p) tb_pipeline_session_close(&session);
    tb_metrics_close(&metrics);
    tb_pipeline_free(&p);
    tb_cli_free(&cli);
    return code;
}
