/* pipeline_ports.c - what each step reads and writes: from --describe, `inputs =`, `outputs =`
 * and `stdout =`; the output overlap check and the streaming groups. */
#include "pipeline_resume.h"

#include "tb/base/error.h"
#include "tb/base/json.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tb_pipeline_describe_stages(const tb_pipeline *p, cJSON **desc)
{
    for (int i = 0; i < p->count; i++) {
        const tb_pipeline_stage *s = &p->stages[i];
        desc[i] = NULL;
        if (!s->program || !tb_pipeline_wants_describe(s)) continue;
        char *json = NULL;
        int rc = tb_pipeline_run_describe(s->program, s->name, &json);
        if (rc != TB_OK) return rc;
        desc[i] = cJSON_Parse(json);
        free(json);
        if (!desc[i] || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(desc[i], "parameters")))
            return TB_ERR(TB_EFORMAT, "[%s]: '%s --describe' did not print a stage description (run tb-pipeline "
                          "--check %s)", s->name, s->program, p->origin);
    }
    return TB_OK;
}

/* ---- paths ------------------------------------------------------------------------------- */

/* Absolute, with "//", "/./", "x/.." and a trailing '/' removed (lexically: links are kept). */
static char *ports_abspath(const char *path)
{
    tb_strbuf b = {0};
    if (path[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return NULL;
        tb_strbuf_puts(&b, cwd);
    }
    tb_strbuf_puts(&b, "/");
    tb_strbuf_puts(&b, path);
    if (!b.p) return NULL;
    char *out = b.p; /* normalised in place: the result is never longer */
    size_t n = 0;
    for (const char *c = b.p; *c;) {
        while (*c == '/') c++;
        const char *end = strchr(c, '/');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        if (len == 0) break;
        if (len == 1 && c[0] == '.') {
        } else if (len == 2 && c[0] == '.' && c[1] == '.') {
            while (n > 0 && out[n - 1] != '/') n--;
            if (n > 0) n--;
        } else {
            out[n++] = '/';
            memmove(out + n, c, len);
            n += len;
        }
        c += len;
    }
    if (n == 0) out[n++] = '/';
    out[n] = '\0';
    return out;
}

static int ports_is_stream(const char *v)
{
    return strncmp(v, "ipc://", 6) == 0 || strncmp(v, "tcp://", 6) == 0 || strncmp(v, "inproc://", 9) == 0;
}

/* "ipc:///abs/path", "tcp:PORT" (a server's * and a client's host name one port), inproc as is. */
static char *ports_stream_key(const char *v)
{
    tb_strbuf b = {0};
    if (strncmp(v, "ipc://", 6) == 0) {
        char *abs = ports_abspath(v + 6);
        if (abs) tb_strbuf_printf(&b, "ipc://%s", abs);
        free(abs);
    } else if (strncmp(v, "tcp://", 6) == 0) {
        const char *colon = strrchr(v + 6, ':');
        tb_strbuf_printf(&b, "tcp:%s", colon ? colon + 1 : v + 6);
    } else {
        tb_strbuf_puts(&b, v);
    }
    return b.p;
}

/* A message file endpoint as a path: file://PATH and file:PATH lose the prefix. */
static const char *ports_file_of(const char *v)
{
    if (strncmp(v, "file://", 7) == 0) return v + 7;
    if (strncmp(v, "file:", 5) == 0) return v + 5;
    return v;
}

static int ports_push(char ***list, int *n, char *item)
{
    if (!item) return TB_ERR(TB_ENOMEM, "out of memory listing the files of a step");
    for (int k = 0; k < *n; k++)
        if (strcmp((*list)[k], item) == 0) {
            free(item);
            return TB_OK;
        }
    char **nl = realloc(*list, (size_t)(*n + 1) * sizeof *nl);
    if (!nl) {
        free(item);
        return TB_ERR(TB_ENOMEM, "out of memory listing the files of a step");
    }
    *list = nl;
    nl[(*n)++] = item;
    return TB_OK;
}

/* ---- options of a run line ----------------------------------------------------------------- */

static const cJSON *ports_param(const cJSON *desc, const char *name, size_t len)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(desc, "parameters"))
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (cJSON_IsString(n) && strlen(n->valuestring) == len && strncmp(n->valuestring, name, len) == 0) return it;
    }
    return NULL;
}

static const char *ports_type(const cJSON *param)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(param, "type");
    return cJSON_IsString(t) ? t->valuestring : "";
}

/* The values of the string and endpoint options given on stage s's run line (the last of each),
 * as an object name -> value; booleans and unknown options are passed over. */
static cJSON *ports_given(const tb_pipeline_stage *s, const cJSON *desc)
{
    cJSON *given = cJSON_CreateObject();
    if (!given) return NULL;
    for (int w = 1; w < s->argc; w++) {
        const char *a = s->argv[w];
        if (strcmp(a, "--") == 0) break;
        if (strncmp(a, "--", 2) != 0) continue;
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cJSON *param = ports_param(desc, name, len);
        if (!param) continue;
        const char *type = ports_type(param);
        if (strcmp(type, "bool") == 0) continue;
        const char *value = eq ? eq + 1 : (w + 1 < s->argc ? s->argv[++w] : NULL);
        if (!value || (strcmp(type, "string") != 0 && strcmp(type, "endpoint") != 0)) continue;
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(param, "name");
        cJSON_DeleteItemFromObjectCaseSensitive(given, n->valuestring);
        cJSON_AddStringToObject(given, n->valuestring, value);
    }
    return given;
}

static const char *ports_port_kind(const cJSON *desc, const char *list, const char *option)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(desc, list))
    {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(it, "option");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(it, "message");
        if (cJSON_IsString(o) && strcmp(o->valuestring, option) == 0) return cJSON_IsString(m) ? m->valuestring : "";
    }
    return NULL;
}

/* Sorts one option value of a described stage into its ports. */
static int ports_add_value(tb_pipeline_ports *pt, const cJSON *desc, const char *option, const char *value)
{
    if (!*value || strcmp(value, "-") == 0) return TB_OK;
    const char *out_kind = ports_port_kind(desc, "outputs", option);
    if (ports_is_stream(value))
        return out_kind ? ports_push(&pt->streams_out, &pt->nstreams_out, ports_stream_key(value))
                        : ports_push(&pt->streams_in, &pt->nstreams_in, ports_stream_key(value));
    char *abs = ports_abspath(ports_file_of(value));
    if (!abs) return TB_ERR(TB_ENOMEM, "out of memory for the path '%s'", value);
    if (strcmp(option, "metrics") == 0 || strcmp(option, "plot") == 0) { /* reports, not data */
        char **slot = option[0] == 'm' ? &pt->metrics_path : &pt->plot_path;
        free(*slot);
        *slot = abs;
        return TB_OK;
    }
    if (!out_kind) return ports_push(&pt->inputs, &pt->ninputs, abs);
    if (strcmp(out_kind, "checkpoint") == 0 && !pt->checkpoint_dir) pt->checkpoint_dir = strdup(abs);
    if (strcmp(out_kind, "metrics") == 0 && !pt->report_path) pt->report_path = strdup(abs);
    return ports_push(&pt->outputs, &pt->noutputs, abs);
}

static int ports_described(tb_pipeline_ports *pt, const tb_pipeline_stage *s, const cJSON *desc)
{
    int rc = TB_OK;
    cJSON *given = ports_given(s, desc);
    TB_CHECK(given, TB_ENOMEM, "out of memory reading the options of [%s]", s->name);
    const cJSON *it;
    cJSON_ArrayForEach(it, given) TB_TRY(ports_add_value(pt, desc, it->string, it->valuestring));
    const cJSON *resume = ports_param(desc, "resume", 6);
    pt->resumable = resume && strcmp(ports_type(resume), "bool") == 0 && pt->checkpoint_dir;
error:
    cJSON_Delete(given);
    return rc;
}

static int ports_stage(tb_pipeline_ports *pt, const tb_pipeline_stage *s, const cJSON *desc)
{
    int rc = TB_OK;
    if (desc) TB_TRY(ports_described(pt, s, desc));
    if (s->stdout_path) TB_TRY(ports_push(&pt->outputs, &pt->noutputs, ports_abspath(s->stdout_path)));
    for (int k = 0; k < s->ndecl_outputs; k++)
        TB_TRY(ports_push(&pt->outputs, &pt->noutputs, ports_abspath(s->decl_outputs[k])));
    for (int k = 0; k < s->ndecl_inputs; k++)
        TB_TRY(ports_push(&pt->inputs, &pt->ninputs, ports_abspath(s->decl_inputs[k])));
    /* a path both read and written (a folder a step updates) is an output */
    for (int k = 0; k < pt->ninputs; k++)
        for (int o = 0; o < pt->noutputs; o++)
            if (strcmp(pt->inputs[k], pt->outputs[o]) == 0) {
                free(pt->inputs[k]);
                pt->inputs[k--] = pt->inputs[--pt->ninputs];
                break;
            }
error:
    return rc;
}

int tb_pipeline_ports_init(tb_pipeline_ports *ports, const tb_pipeline *p, cJSON *const *desc)
{
    memset(ports, 0, (size_t)p->count * sizeof *ports);
    for (int i = 0; i < p->count; i++) {
        int rc = ports_stage(&ports[i], &p->stages[i], desc ? desc[i] : NULL);
        if (rc != TB_OK) return rc;
    }
    return TB_OK;
}

static void ports_free_list(char **list, int n)
{
    for (int k = 0; k < n; k++) free(list[k]);
    free(list);
}

void tb_pipeline_ports_free(tb_pipeline_ports *ports, int count)
{
    for (int i = 0; ports && i < count; i++) {
        tb_pipeline_ports *pt = &ports[i];
        ports_free_list(pt->outputs, pt->noutputs);
        ports_free_list(pt->inputs, pt->ninputs);
        ports_free_list(pt->streams_out, pt->nstreams_out);
        ports_free_list(pt->streams_in, pt->nstreams_in);
        free(pt->checkpoint_dir);
        free(pt->metrics_path);
        free(pt->plot_path);
        free(pt->report_path);
        memset(pt, 0, sizeof *pt);
    }
}

/* ---- overlaps and groups ----------------------------------------------------------------- */

static int ports_inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && path[n] == '/';
}

/* One "FAIL" line when stage j's output y is stage i's output x, or lies inside i's checkpoint
 * folder x; returns 1 then. */
static int ports_overlap(const tb_pipeline *p, const tb_pipeline_ports *ports, int i, const char *x, int j,
                         const char *y, FILE *report)
{
    const tb_pipeline_stage *si = &p->stages[i], *sj = &p->stages[j];
    if (strcmp(x, y) == 0) {
        fprintf(report, "FAIL [%s] %s:%d: [%s] and [%s] both write %s (give each step its own output)\n", sj->name,
                p->origin, sj->run_line, si->name, sj->name, x);
        return 1;
    }
    if (ports[i].checkpoint_dir && strcmp(x, ports[i].checkpoint_dir) == 0 && ports_inside(y, x)) {
        fprintf(report, "FAIL [%s] %s:%d: [%s] writes %s inside the checkpoint folder %s of [%s] (a checkpoint "
                "folder belongs to the step that trains)\n", sj->name, p->origin, sj->run_line, sj->name, y, x,
                si->name);
        return 1;
    }
    return 0;
}

int tb_pipeline_check_outputs(const tb_pipeline *p, const tb_pipeline_ports *ports, FILE *report)
{
    int problems = 0;
    for (int i = 0; i < p->count; i++)
        for (int j = i + 1; j < p->count; j++) {
            for (int a = 0; a < ports[i].noutputs; a++)
                for (int b = 0; b < ports[j].noutputs; b++)
                    if (!ports_overlap(p, ports, i, ports[i].outputs[a], j, ports[j].outputs[b], report))
                        problems += ports_overlap(p, ports, j, ports[j].outputs[b], i, ports[i].outputs[a], report);
                    else
                        problems++;
            for (int a = 0; a < ports[i].nstreams_out; a++)
                for (int b = 0; b < ports[j].nstreams_out; b++)
                    if (strcmp(ports[i].streams_out[a], ports[j].streams_out[b]) == 0) {
                        fprintf(report, "FAIL [%s] %s:%d: [%s] and [%s] both serve %s (give each its own endpoint)\n",
                                p->stages[j].name, p->origin, p->stages[j].run_line, p->stages[i].name,
                                p->stages[j].name, ports[i].streams_out[a]);
                        problems++;
                    }
        }
    fflush(report);
    return problems;
}

static int ports_find_root(int *group, int i)
{
    while (group[i] != i) i = group[i] = group[group[i]];
    return i;
}

void tb_pipeline_stream_groups(const tb_pipeline *p, const tb_pipeline_ports *ports, int *group)
{
    for (int i = 0; i < p->count; i++) group[i] = i;
    for (int i = 0; i < p->count; i++)
        for (int j = 0; j < p->count; j++)
            for (int a = 0; a < ports[i].nstreams_out; a++)
                for (int b = 0; b < ports[j].nstreams_in; b++)
                    if (i != j && strcmp(ports[i].streams_out[a], ports[j].streams_in[b]) == 0) {
                        int ri = ports_find_root(group, i), rj = ports_find_root(group, j);
                        group[ri > rj ? ri : rj] = ri > rj ? rj : ri;
                    }
    for (int i = 0; i < p->count; i++) group[i] = ports_find_root(group, i);
}
