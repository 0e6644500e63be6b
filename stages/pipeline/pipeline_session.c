/* pipeline_session.c - sets up a resumable run: descriptions, ports, the state file, the plan,
 * and the records written as steps start and finish. */
#include "pipeline_resume.h"

#include "tb/base/error.h"
#include "tb/base/json.h"
#include "tb/base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *session_var(const tb_pipeline *p, char *const *overrides, int noverrides, const char *name)
{
    size_t len = strlen(name);
    for (int i = noverrides - 1; i >= 0; i--)
        if (strncmp(overrides[i], name, len) == 0 && overrides[i][len] == '=') return overrides[i] + len + 1;
    for (int i = p->nvars - 1; i >= 0; i--)
        if (strcmp(p->var_names[i], name) == 0) return p->var_values[i];
    return getenv(name);
}

char *tb_pipeline_state_path(const tb_pipeline *p, char *const *overrides, int noverrides, const char *given)
{
    if (given) return *given ? strdup(given) : NULL;
    const char *v = session_var(p, overrides, noverrides, "PIPELINE_STATE");
    if (v && *v) return strdup(v);
    v = session_var(p, overrides, noverrides, "RUN");
    if (!v || !*v) return NULL;
    tb_strbuf b = {0};
    tb_strbuf_printf(&b, "%s/pipeline-state.json", v);
    return b.p;
}

/* mkdir -p of the folder that holds `path`. */
static int session_make_parent(const char *path)
{
    int rc = TB_OK;
    char *dir = strdup(path);
    TB_CHECK(dir, TB_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) goto error;
    *slash = '\0';
    for (char *c = dir + 1; ; c++) {
        if (*c != '/' && *c != '\0') continue;
        char keep = *c;
        *c = '\0';
        TB_CHECK(mkdir(dir, 0755) == 0 || errno == EEXIST, TB_EIO, "cannot make the folder '%s' for the pipeline "
                 "state: %s", dir, strerror(errno));
        *c = keep;
        if (!keep) break;
    }
error:
    free(dir);
    return rc;
}

static int session_find(const tb_pipeline *p, const char *from, int *idx)
{
    *idx = -1;
    if (!from) return TB_OK;
    *idx = tb_pipeline_find(p, from);
    if (*idx >= 0) return TB_OK;
    tb_strbuf b = {0};
    for (int i = 0; i < p->count; i++) tb_strbuf_printf(&b, "%s%s", i ? ", " : "", p->stages[i].name);
    int rc = TB_ERR(TB_EINVAL, "--from %s: %s has no step of that name (its steps: %s)", from, p->origin,
                    b.p ? b.p : "");
    tb_strbuf_free(&b);
    return rc;
}

int tb_pipeline_session_open(tb_pipeline_session *s, const tb_pipeline *p, const char *state_path, int force,
                             const char *from)
{
    int rc = TB_OK, from_idx = -1;
    memset(s, 0, sizeof *s);
    s->p = p;
    s->state.lock_fd = -1;
    s->desc = calloc((size_t)p->count + 1, sizeof *s->desc);
    s->ports = calloc((size_t)p->count + 1, sizeof *s->ports);
    s->skip = calloc((size_t)p->count + 1, sizeof *s->skip);
    TB_CHECK(s->desc && s->ports && s->skip, TB_ENOMEM, "out of memory for %d steps", p->count);
    TB_TRY(session_find(p, from, &from_idx));
    TB_TRY(tb_pipeline_describe_stages(p, s->desc));
    TB_TRY(tb_pipeline_ports_init(s->ports, p, s->desc));
    int overlaps = tb_pipeline_check_outputs(p, s->ports, stderr);
    TB_CHECK(overlaps == 0, TB_EINVAL, "%s: %d output%s written by two steps (listed above); give each step its own",
             p->origin, overlaps, overlaps == 1 ? " is" : "s are");
    if (!state_path) {
        if (force || from) TB_INFO("no state file (give --state or define RUN): every step runs");
        return TB_OK;
    }
    TB_TRY(session_make_parent(state_path));
    s->have_state = 1; /* closed by tb_pipeline_session_close, also when opening it failed half-way */
    TB_TRY(tb_pipeline_state_open(&s->state, state_path));
    TB_TRY(tb_pipeline_plan_make(&s->plan, p, s->ports, &s->state, force, from_idx));
    TB_TRY(tb_pipeline_plan_apply(&s->plan, p, s->ports, &s->state));
    for (int i = 0; i < p->count; i++) s->skip[i] = s->plan.action[i] == TB_PLAN_SKIP;
error:
    return rc;
}

static int session_on_stage(void *ctx, int stage, int event, double seconds)
{
    tb_pipeline_session *s = ctx;
    return tb_pipeline_record(&s->state, s->p, s->ports, stage, event == TB_PIPELINE_EV_OK, seconds);
}

void tb_pipeline_session_run_opts(tb_pipeline_session *s, tb_pipeline_run_opts *ro)
{
    if (!s->have_state) return;
    ro->skip = s->skip;
    ro->argv = s->plan.argv;
    ro->on_stage = session_on_stage;
    ro->ctx = s;
}

void tb_pipeline_session_close(tb_pipeline_session *s)
{
    for (int i = 0; s->desc && i < s->p->count; i++) cJSON_Delete(s->desc[i]);
    free(s->desc);
    if (s->ports) tb_pipeline_ports_free(s->ports, s->p->count);
    free(s->ports);
    if (s->have_state) tb_pipeline_state_close(&s->state);
    tb_pipeline_plan_free(&s->plan);
    free(s->skip);
    memset(s, 0, sizeof *s);
}
