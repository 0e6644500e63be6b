/* pipeline_plan.c - which steps of a rerun are skipped, resumed or run, from the state file. */
#include "pipeline_resume.h"

#include "tb/base/error.h"
#include "tb/base/json.h"
#include "tb/base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum { OWN_UP_TO_DATE = 0, OWN_INTERRUPTED, OWN_CHANGED };

static void plan_why(tb_pipeline_plan *plan, int i, const char *fmt, const char *arg)
{
    tb_strbuf b = {0};
    tb_strbuf_printf(&b, fmt, arg);
    free(plan->why[i]);
    plan->why[i] = b.p; /* NULL when out of memory: logged as "" */
}

static const char *plan_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* Whether every {path: identity} of `ids` still holds; the first that does not goes to *bad. */
static int plan_same_ids(const cJSON *ids, const char **bad, int *gone)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, ids)
    {
        char *now = NULL;
        if (tb_pipeline_identity(it->string, &now) != TB_OK || !now || !cJSON_IsString(it) ||
            strcmp(now, it->valuestring) != 0) {
            *bad = it->string;
            *gone = now == NULL;
            free(now);
            return 0;
        }
        free(now);
    }
    return 1;
}

/* What stage i's own record says, without looking at the other stages. */
static int plan_own(tb_pipeline_plan *plan, const tb_pipeline *p, const tb_pipeline_ports *pt, const cJSON *rec, int i)
{
    const tb_pipeline_stage *s = &p->stages[i];
    if (!rec) {
        plan_why(plan, i, "%s", "no record of an earlier run");
        return OWN_CHANGED;
    }
    char *command = NULL, *program = NULL;
    int same_cmd = tb_pipeline_command_key(p, i, &command) == TB_OK && strcmp(command, plan_str(rec, "command")) == 0;
    int same_prog = !s->program || (tb_pipeline_identity(s->program, &program) == TB_OK && program &&
                                    strcmp(program, plan_str(rec, "program_identity")) == 0);
    free(command);
    free(program);
    if (!same_cmd) {
        plan_why(plan, i, "%s", "its command changed");
        return OWN_CHANGED;
    }
    if (!same_prog) {
        plan_why(plan, i, "its program %s changed", s->program);
        return OWN_CHANGED;
    }
    const char *bad = NULL;
    int gone = 0;
    if (!plan_same_ids(cJSON_GetObjectItemCaseSensitive(rec, "inputs"), &bad, &gone)) {
        plan_why(plan, i, gone ? "its input %s is gone" : "its input %s changed", bad);
        return OWN_CHANGED;
    }
    if (strcmp(plan_str(rec, "status"), "done") != 0) {
        plan_why(plan, i, "%s", "it did not finish");
        return OWN_INTERRUPTED;
    }
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(rec, "outputs");
    if (!plan_same_ids(outs, &bad, &gone)) {
        plan_why(plan, i, gone ? "its output %s is gone" : "its output %s changed since it finished", bad);
        return OWN_CHANGED;
    }
    for (int k = 0; k < pt->noutputs; k++)
        if (!cJSON_GetObjectItemCaseSensitive(outs, pt->outputs[k])) {
            plan_why(plan, i, "its output %s was not written", pt->outputs[k]);
            return OWN_CHANGED;
        }
    plan_why(plan, i, "%s", "up to date");
    return OWN_UP_TO_DATE;
}

static int plan_has_checkpoint(const tb_pipeline_ports *pt)
{
    if (!pt->checkpoint_dir) return 0;
    tb_strbuf b = {0};
    tb_strbuf_printf(&b, "%s/latest", pt->checkpoint_dir);
    struct stat st;
    int yes = b.p && lstat(b.p, &st) == 0;
    tb_strbuf_free(&b);
    return yes;
}

/* The run line with --resume added (unless it has it). */
static int plan_resume_argv(const tb_pipeline_stage *s, char ***out)
{
    char **argv = calloc((size_t)s->argc + 2, sizeof *argv);
    if (!argv) return TB_ERR(TB_ENOMEM, "out of memory for the command of [%s]", s->name);
    int n = 0, has = 0;
    for (int w = 0; w < s->argc; w++) {
        has = has || strcmp(s->argv[w], "--resume") == 0;
        argv[n++] = s->argv[w]; /* borrowed */
    }
    if (!has) argv[n++] = (char *)"--resume";
    argv[n] = NULL;
    *out = argv;
    return TB_OK;
}

/* Runs what must run because another stage runs: everything after a stage that runs, and every
 * stage streaming with one that runs (from scratch when that one's inputs changed). */
static void plan_spread(tb_pipeline_plan *plan, const tb_pipeline *p, const int *group, int *changed)
{
    for (int again = 1; again;) {
        again = 0;
        for (int i = 0; i < p->count; i++) {
            const tb_pipeline_stage *s = &p->stages[i];
            for (int a = 0; a < s->nafter && plan->action[i] != TB_PLAN_RUN; a++)
                if (plan->action[s->after_idx[a]] != TB_PLAN_SKIP) {
                    plan->action[i] = TB_PLAN_RUN;
                    changed[i] = 1;
                    plan_why(plan, i, "it runs after %s, which runs", p->stages[s->after_idx[a]].name);
                    again = 1;
                }
            for (int j = 0; j < p->count; j++) {
                if (j == i || group[j] != group[i] || plan->action[j] == TB_PLAN_SKIP) continue;
                int fresh = changed[j] && !changed[i];
                if (plan->action[i] == TB_PLAN_SKIP || (fresh && plan->action[i] == TB_PLAN_RESUME)) {
                    plan->action[i] = TB_PLAN_RUN;
                    changed[i] = changed[j];
                    plan_why(plan, i, "it streams with %s, which runs", p->stages[j].name);
                    again = 1;
                }
            }
        }
    }
}

int tb_pipeline_plan_make(tb_pipeline_plan *plan, const tb_pipeline *p, const tb_pipeline_ports *ports,
                          const tb_pipeline_state *st, int force, int from)
{
    int rc = TB_OK;
    int n = p->count;
    memset(plan, 0, sizeof *plan);
    plan->count = n;
    plan->action = calloc((size_t)n + 1, sizeof *plan->action);
    plan->why = calloc((size_t)n + 1, sizeof *plan->why);
    plan->argv = calloc((size_t)n + 1, sizeof *plan->argv);
    int *changed = calloc((size_t)n + 1, sizeof *changed), *group = calloc((size_t)n + 1, sizeof *group);
    TB_CHECK(plan->action && plan->why && plan->argv && changed && group, TB_ENOMEM, "out of memory planning %d steps",
             n);
    const cJSON *steps = st ? cJSON_GetObjectItemCaseSensitive(st->root, "steps") : NULL;
    for (int i = 0; i < n; i++) {
        int own = plan_own(plan, p, &ports[i], cJSON_GetObjectItemCaseSensitive(steps, p->stages[i].name), i);
        if (force || i == from) {
            own = OWN_CHANGED;
            plan_why(plan, i, "%s", force ? "--force" : "--from");
        }
        changed[i] = own == OWN_CHANGED;
        plan->action[i] = own == OWN_UP_TO_DATE ? TB_PLAN_SKIP
                          : own == OWN_INTERRUPTED && ports[i].resumable && plan_has_checkpoint(&ports[i])
                              ? TB_PLAN_RESUME
                              : TB_PLAN_RUN;
    }
    tb_pipeline_stream_groups(p, ports, group);
    plan_spread(plan, p, group, changed);
    for (int i = 0; i < n; i++)
        if (plan->action[i] == TB_PLAN_RESUME) TB_TRY(plan_resume_argv(&p->stages[i], &plan->argv[i]));
error:
    free(changed);
    free(group);
    return rc;
}

void tb_pipeline_plan_free(tb_pipeline_plan *plan)
{
    for (int i = 0; plan->why && i < plan->count; i++) free(plan->why[i]);
    for (int i = 0; plan->argv && i < plan->count; i++) free(plan->argv[i]); /* the words are borrowed */
    free(plan->action);
    free(plan->why);
    free(plan->argv);
    memset(plan, 0, sizeof *plan);
}

/* Renames a training step's checkpoint folder of an earlier run out of the way of a fresh run. */
static int plan_move_aside(const tb_pipeline_stage *s, const char *dir)
{
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    tb_strbuf b = {0};
    struct stat st;
    for (int k = 0; k < 100; k++) {
        b.len = 0;
        if (k == 0) tb_strbuf_printf(&b, "%s.replaced-%s", dir, stamp);
        else tb_strbuf_printf(&b, "%s.replaced-%s-%d", dir, stamp, k);
        if (!b.p || lstat(b.p, &st) != 0) break;
    }
    int rc = TB_OK;
    TB_CHECK(b.p, TB_ENOMEM, "out of memory");
    TB_CHECK(rename(dir, b.p) == 0, TB_EIO, "[%s]: cannot move the checkpoints of its earlier run out of the way "
             "(%s -> %s): %s", s->name, dir, b.p, strerror(errno));
    TB_INFO("%s: its checkpoints of an earlier run moved to %s (remove them when not needed)", s->name, b.p);
error:
    tb_strbuf_free(&b);
    return rc;
}

int tb_pipeline_plan_apply(const tb_pipeline_plan *plan, const tb_pipeline *p, const tb_pipeline_ports *ports,
                           const tb_pipeline_state *st)
{
    const cJSON *steps = st ? cJSON_GetObjectItemCaseSensitive(st->root, "steps") : NULL;
    for (int i = 0; i < p->count; i++) {
        const char *why = plan->why[i] ? plan->why[i] : "";
        const char *name = p->stages[i].name;
        if (plan->action[i] == TB_PLAN_SKIP) TB_INFO("%s: skipped: up to date", name);
        else if (plan->action[i] == TB_PLAN_RESUME) TB_INFO("%s: resumes from its checkpoint (%s)", name, why);
        else TB_INFO("%s: runs (%s)", name, why);
        if (plan->action[i] == TB_PLAN_RUN && ports[i].resumable && plan_has_checkpoint(&ports[i]) &&
            cJSON_GetObjectItemCaseSensitive(steps, name)) {
            int rc = plan_move_aside(&p->stages[i], ports[i].checkpoint_dir);
            if (rc != TB_OK) return rc;
        }
    }
    return TB_OK;
}
