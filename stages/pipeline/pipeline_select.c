/* stages/pipeline/pipeline_select.c - keep only some stages of a parsed pipeline (tb-pipeline --only). */
#include "pipeline.h"

#include "tb/base/error.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Is `name` one of the comma or blank separated words of `list`? */
static int select_listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *s = list; *s;) {
        while (*s == ',' || isspace((unsigned char)*s)) s++;
        const char *e = s;
        while (*e && *e != ',' && !isspace((unsigned char)*e)) e++;
        if ((size_t)(e - s) == n && n > 0 && strncmp(s, name, n) == 0) return 1;
        s = e;
    }
    return 0;
}

/* Every word of `list` names a stage of `p`; the error names the first that does not. */
static int select_check_names(const tb_pipeline *p, const char *list)
{
    int words = 0;
    for (const char *s = list; *s;) {
        while (*s == ',' || isspace((unsigned char)*s)) s++;
        const char *e = s;
        while (*e && *e != ',' && !isspace((unsigned char)*e)) e++;
        if (e == s) break;
        words++;
        int found = 0;
        for (int i = 0; i < p->count && !found; i++)
            found = strlen(p->stages[i].name) == (size_t)(e - s) && strncmp(p->stages[i].name, s, (size_t)(e - s)) == 0;
        if (!found)
            return TB_ERR(TB_EINVAL, "%s: --only names '%.*s', which is not a stage of this pipeline (see its [sections], "
                          "or tb-pipeline --dry-run %s)", p->origin, (int)(e - s), s, p->origin);
        s = e;
    }
    if (words == 0) return TB_ERR(TB_EINVAL, "--only: give at least one stage name (comma separated)");
    return TB_OK;
}

/* Levels (longest `after` chain) and `concurrent` counts of the stages, from after_idx. */
static int select_relink(tb_pipeline *p)
{
    int n = p->count;
    unsigned char *reach = calloc((size_t)n * (size_t)n + 1, 1); /* reach[i*n+j]: j finishes before i starts */
    if (!reach) return TB_ERR(TB_ENOMEM, "out of memory selecting stages");
    for (int i = 0; i < n; i++)
        for (int a = 0; a < p->stages[i].nafter; a++) reach[i * n + p->stages[i].after_idx[a]] = 1;
    for (int k = 0; k < n; k++)
        for (int i = 0; i < n; i++)
            if (reach[i * n + k])
                for (int j = 0; j < n; j++) reach[i * n + j] |= reach[k * n + j];
    for (int i = 0; i < n; i++) p->stages[i].level = 0;
    for (int round = 0; round < n; round++) /* the graph is acyclic: n rounds settle every level */
        for (int i = 0; i < n; i++)
            for (int a = 0; a < p->stages[i].nafter; a++) {
                int d = p->stages[i].after_idx[a];
                if (p->stages[d].level + 1 > p->stages[i].level) p->stages[i].level = p->stages[d].level + 1;
            }
    for (int i = 0; i < n; i++) {
        p->stages[i].concurrent = 0;
        for (int j = 0; j < n; j++)
            if (!reach[i * n + j] && !reach[j * n + i]) p->stages[i].concurrent++;
    }
    free(reach);
    return TB_OK;
}

int tb_pipeline_select(tb_pipeline *p, const char *names)
{
    int rc = TB_OK;
    tb_pipeline dropped = {0};
    int *map = NULL;
    TB_TRY(select_check_names(p, names));
    map = malloc(((size_t)p->count + 1) * sizeof *map);
    dropped.stages = calloc((size_t)p->count + 1, sizeof *dropped.stages);
    TB_CHECK(map && dropped.stages, TB_ENOMEM, "out of memory selecting stages");
    int kept = 0;
    for (int i = 0; i < p->count; i++) map[i] = select_listed(names, p->stages[i].name) ? kept++ : -1;
    for (int i = 0; i < p->count; i++) {
        tb_pipeline_stage *s = &p->stages[i];
        if (map[i] < 0) continue;
        int na = 0;
        for (int a = 0; a < s->nafter; a++) {
            if (map[s->after_idx[a]] < 0) { /* left out: the caller has run it already */
                free(s->after[a]);
                continue;
            }
            s->after[na] = s->after[a];
            s->after_idx[na++] = map[s->after_idx[a]];
        }
        s->nafter = na;
    }
    for (int i = 0, k = 0; i < p->count; i++) {
        if (map[i] >= 0) p->stages[k++] = p->stages[i];
        else dropped.stages[dropped.count++] = p->stages[i];
    }
    p->count = kept;
    rc = select_relink(p);
error:
    tb_pipeline_free(&dropped); /* frees the left-out stages as tb_pipeline_free frees any */
    free(map);
    return rc;
}
