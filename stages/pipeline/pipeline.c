/* pipeline.c - pipeline files: parsing, variables, dependencies, program lookup and the plan.
 * Running is in pipeline_run.c, checking in pipeline_check.c. */
#include "pipeline.h"

#include "tb/base/error.h"
#include "tb/base/json.h"
#include "tb/base/threads.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PIPE_MAX_STAGES 256
#define PIPE_MAX_FILE (16u << 20)

typedef struct pipe_parser {
    tb_pipeline *p;
    char *const *overrides;
    int noverrides;
    const char *origin;
    int line;
} pipe_parser;

static char *pipe_strdup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static int pipe_name_char(int c) { return isalnum(c) || c == '_' || c == '-' || c == '.'; }
static int pipe_var_char(int c) { return isalnum(c) || c == '_'; }

/* ---- variables --------------------------------------------------------------------------- */

static const char *pipe_var_lookup(const pipe_parser *ps, const char *name, size_t len)
{
    for (int i = ps->noverrides - 1; i >= 0; i--) {
        const char *eq = strchr(ps->overrides[i], '=');
        if (eq && (size_t)(eq - ps->overrides[i]) == len && strncmp(ps->overrides[i], name, len) == 0) return eq + 1;
    }
    for (int i = ps->p->nvars - 1; i >= 0; i--)
        if (strlen(ps->p->var_names[i]) == len && strncmp(ps->p->var_names[i], name, len) == 0)
            return ps->p->var_values[i];
    if (len == 12 && strncmp(name, "PIPELINE_DIR", 12) == 0) return ps->p->dir;
    char tmp[256];
    if (len >= sizeof tmp) return NULL;
    memcpy(tmp, name, len);
    tmp[len] = '\0';
    return getenv(tmp);
}

/* At *s == '$': appends the expansion to b and advances *s past it. */
static int pipe_expand_dollar(const pipe_parser *ps, const char **s, tb_strbuf *b)
{
    const char *c = *s;
    if (c[1] == '$' && c[2] == '{') { /* $${ is a literal ${ */
        *s = c + 3;
        return tb_strbuf_append(b, "${", 2);
    }
    if (c[1] != '{') { /* any other $ is itself: $HOME and $$ reach the program untouched */
        *s = c + 1;
        return tb_strbuf_append(b, "$", 1);
    }
    const char *name = c + 2;
    const char *end = strchr(name, '}');
    if (!end)
        return TB_ERR(TB_EFORMAT, "%s:%d: '${' without a closing '}'", ps->origin, ps->line);
    size_t nlen = 0;
    while (name + nlen < end && pipe_var_char((unsigned char)name[nlen])) nlen++;
    const char *fallback = NULL;
    if (name + nlen + 1 < end && name[nlen] == ':' && name[nlen + 1] == '-') fallback = name + nlen + 2;
    else if (name + nlen != end) nlen = 0;
    if (nlen == 0 || isdigit((unsigned char)name[0]))
        return TB_ERR(TB_EFORMAT, "%s:%d: '${%.*s}' is not a variable name (letters, digits and '_'; "
                      "${NAME:-default} for a fallback; $${ for a literal '${')", ps->origin, ps->line,
                      (int)(end - name), name);
    *s = end + 1;
    const char *val = pipe_var_lookup(ps, name, nlen);
    if (fallback && (!val || !*val)) return tb_strbuf_append(b, fallback, (size_t)(end - fallback));
    if (!val)
        return TB_ERR(TB_EFORMAT, "%s:%d: variable '%.*s' is not defined (define it in [vars], pass %.*s=VALUE "
                      "on the command line, or set it in the environment)", ps->origin, ps->line, (int)nlen,
                      name, (int)nlen, name);
    return tb_strbuf_puts(b, val);
}

static int pipe_expand(const pipe_parser *ps, const char *text, char **out)
{
    int rc = TB_OK;
    tb_strbuf b = {0};
    for (const char *c = text; *c;) {
        if (*c == '$') {
            TB_TRY(pipe_expand_dollar(ps, &c, &b));
        } else {
            TB_TRY(tb_strbuf_append(&b, c, 1));
            c++;
        }
    }
    TB_TRY(tb_strbuf_take(&b, out));
error:
    tb_strbuf_free(&b);
    return rc;
}

/* ---- run = ... into words ---------------------------------------------------------------- */

static int pipe_push_word(char ***words, int *n, tb_strbuf *w)
{
    char **nw = realloc(*words, (size_t)(*n + 2) * sizeof *nw);
    if (!nw) return TB_ERR(TB_ENOMEM, "out of memory splitting a run line");
    *words = nw;
    int rc = tb_strbuf_take(w, &nw[*n]);
    if (rc != TB_OK) return rc;
    (*n)++;
    nw[*n] = NULL;
    return TB_OK;
}

/* Splits like a POSIX shell (blanks, '...', "...", backslash) and expands ${VAR} inside words. */
static int pipe_split(const pipe_parser *ps, const char *key, const char *text, char ***out, int *count)
{
    int rc = TB_OK;
    char **words = NULL;
    int n = 0;
    tb_strbuf w = {0};
    int in_word = 0;
    const char *c = text;
    while (*c) {
        if (*c == ' ' || *c == '\t') {
            if (in_word) TB_TRY(pipe_push_word(&words, &n, &w));
            in_word = 0;
            c++;
            continue;
        }
        in_word = 1;
        if (*c == '\'') {
            const char *end = strchr(c + 1, '\'');
            TB_CHECK(end, TB_EFORMAT, "%s:%d: unterminated ' quote in %s", ps->origin, ps->line, key);
            for (c++; c < end;) {
                if (*c == '$') TB_TRY(pipe_expand_dollar(ps, &c, &w));
                else TB_TRY(tb_strbuf_append(&w, c++, 1));
            }
            c = end + 1;
        } else if (*c == '"') {
            for (c++; *c && *c != '"';) {
                if (*c == '\\' && (c[1] == '"' || c[1] == '\\' || c[1] == '$')) {
                    TB_TRY(tb_strbuf_append(&w, c + 1, 1));
                    c += 2;
                } else if (*c == '$') {
                    TB_TRY(pipe_expand_dollar(ps, &c, &w));
                } else {
                    TB_TRY(tb_strbuf_append(&w, c++, 1));
                }
            }
            TB_CHECK(*c == '"', TB_EFORMAT, "%s:%d: unterminated \" quote in %s", ps->origin, ps->line, key);
            c++;
        } else if (*c == '\\') {
            TB_CHECK(c[1], TB_EFORMAT, "%s:%d: %s ends with a lone backslash", ps->origin, ps->line, key);
            TB_TRY(tb_strbuf_append(&w, c + 1, 1));
            c += 2;
        } else if (*c == '$') {
            TB_TRY(pipe_expand_dollar(ps, &c, &w));
        } else {
            TB_TRY(tb_strbuf_append(&w, c++, 1));
        }
        /* an empty quoted word ('') is still a word */
        if (!w.p) TB_TRY(tb_strbuf_append(&w, "", 0));
    }
    if (in_word) TB_TRY(pipe_push_word(&words, &n, &w));
    TB_CHECK(n > 0, TB_EFORMAT, "%s:%d: %s is empty (%s)", ps->origin, ps->line, key,
             strcmp(key, "run") == 0 ? "give the command to start" : "give one or more paths");
    *out = words;
    *count = n;
    words = NULL;
error:
    tb_strbuf_free(&w);
    for (int i = 0; words && i < n; i++) free(words[i]);
    free(words);
    return rc;
}

/* ---- sections and keys ------------------------------------------------------------------- */

static int pipe_add_var(pipe_parser *ps, const char *name, size_t nlen, const char *raw)
{
    tb_pipeline *p = ps->p;
    char *value = NULL;
    int rc = pipe_expand(ps, raw, &value);
    if (rc != TB_OK) return rc;
    for (int i = 0; i < ps->noverrides; i++) {
        const char *eq = strchr(ps->overrides[i], '=');
        if (eq && (size_t)(eq - ps->overrides[i]) == nlen && strncmp(ps->overrides[i], name, nlen) == 0) {
            free(value); /* the command line wins; keep the file's value out of the way */
            value = strdup(eq + 1);
            if (!value) return TB_ERR(TB_ENOMEM, "out of memory for variable %.*s", (int)nlen, name);
        }
    }
    char **nn = realloc(p->var_names, (size_t)(p->nvars + 1) * sizeof *nn);
    if (nn) p->var_names = nn;
    char **nv = realloc(p->var_values, (size_t)(p->nvars + 1) * sizeof *nv);
    if (nv) p->var_values = nv;
    char *ncopy = pipe_strdup(name, nlen);
    if (!nn || !nv || !ncopy) {
        free(value);
        free(ncopy);
        return TB_ERR(TB_ENOMEM, "out of memory for variable %.*s", (int)nlen, name);
    }
    p->var_names[p->nvars] = ncopy;
    p->var_values[p->nvars] = value;
    p->nvars++;
    return TB_OK;
}

static int pipe_add_stage(pipe_parser *ps, const char *name, size_t nlen)
{
    tb_pipeline *p = ps->p;
    for (int i = 0; i < p->count; i++)
        if (strlen(p->stages[i].name) == nlen && strncmp(p->stages[i].name, name, nlen) == 0)
            return TB_ERR(TB_EFORMAT, "%s:%d: stage [%.*s] is defined twice (first on line %d); stage names must be "
                          "unique", ps->origin, ps->line, (int)nlen, name, p->stages[i].line);
    if (p->count >= PIPE_MAX_STAGES)
        return TB_ERR(TB_EFORMAT, "%s:%d: more than %d stages", ps->origin, ps->line, PIPE_MAX_STAGES);
    tb_pipeline_stage *ns = realloc(p->stages, (size_t)(p->count + 1) * sizeof *ns);
    if (!ns) return TB_ERR(TB_ENOMEM, "out of memory for stage %.*s", (int)nlen, name);
    p->stages = ns;
    tb_pipeline_stage *s = &p->stages[p->count];
    memset(s, 0, sizeof *s);
    s->describe = -1;
    s->line = ps->line;
    s->name = pipe_strdup(name, nlen);
    if (!s->name) return TB_ERR(TB_ENOMEM, "out of memory for stage %.*s", (int)nlen, name);
    p->count++;
    return TB_OK;
}

static int pipe_set_after(pipe_parser *ps, tb_pipeline_stage *s, const char *value)
{
    char *text = NULL;
    int rc = pipe_expand(ps, value, &text);
    if (rc != TB_OK) return rc;
    for (char *tok = strtok(text, ", \t"); tok; tok = strtok(NULL, ", \t")) {
        char **na = realloc(s->after, (size_t)(s->nafter + 1) * sizeof *na);
        if (!na) {
            rc = TB_ERR(TB_ENOMEM, "out of memory for after");
            break;
        }
        s->after = na;
        s->after[s->nafter] = strdup(tok);
        if (!s->after[s->nafter]) {
            rc = TB_ERR(TB_ENOMEM, "out of memory for after");
            break;
        }
        s->nafter++;
    }
    free(text);
    return rc;
}

static int pipe_stage_key(pipe_parser *ps, tb_pipeline_stage *s, const char *key, const char *value)
{
    if (strcmp(key, "run") == 0) {
        if (s->argv)
            return TB_ERR(TB_EFORMAT, "%s:%d: [%s] has two run lines (line %d and %d)", ps->origin, ps->line,
                          s->name, s->run_line, ps->line);
        s->run_line = ps->line;
        return pipe_split(ps, key, value, &s->argv, &s->argc);
    }
    if (strcmp(key, "after") == 0) return pipe_set_after(ps, s, value);
    if (strcmp(key, "stdout") == 0) {
        free(s->stdout_path);
        s->stdout_path = NULL;
        return pipe_expand(ps, value, &s->stdout_path);
    }
    if (strcmp(key, "threads") == 0) {
        char *end = NULL;
        long v = strtol(value, &end, 10);
        if (!*value || *end || v < 1 || v > 4096)
            return TB_ERR(TB_EFORMAT, "%s:%d: threads = '%s' is not a thread count (1 to 4096)", ps->origin,
                          ps->line, value);
        s->threads = (int)v;
        return TB_OK;
    }
    if (strcmp(key, "outputs") == 0 || strcmp(key, "inputs") == 0) {
        int out = key[0] == 'o';
        char ***list = out ? &s->decl_outputs : &s->decl_inputs;
        int *n = out ? &s->ndecl_outputs : &s->ndecl_inputs;
        if (*list)
            return TB_ERR(TB_EFORMAT, "%s:%d: [%s] has two %s lines (give every path on one, blank separated)",
                          ps->origin, ps->line, s->name, key);
        return pipe_split(ps, key, value, list, n);
    }
    if (strcmp(key, "describe") == 0) {
        if (!strcmp(value, "yes") || !strcmp(value, "true")) s->describe = 1;
        else if (!strcmp(value, "no") || !strcmp(value, "false")) s->describe = 0;
        else if (!strcmp(value, "auto")) s->describe = -1;
        else
            return TB_ERR(TB_EFORMAT, "%s:%d: describe = '%s' (use yes, no or auto)", ps->origin, ps->line, value);
        return TB_OK;
    }
    return TB_ERR(TB_EFORMAT, "%s:%d: unknown key '%s' in [%s] (a stage has run, after, stdout, threads, "
                  "describe, inputs, outputs)", ps->origin, ps->line, key, s->name);
}

static char *pipe_trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = '\0';
    return s;
}

/* One logical line (continuations joined). section: -2 none yet, -1 [vars], >= 0 a stage. */
static int pipe_parse_line(pipe_parser *ps, char *line, int *section)
{
    char *s = pipe_trim(line);
    if (!*s || *s == '#' || *s == ';') return TB_OK;
    if (*s == '[') {
        char *end = strchr(s, ']');
        if (!end || pipe_trim(end + 1)[0])
            return TB_ERR(TB_EFORMAT, "%s:%d: a section line is [name] alone on its line", ps->origin, ps->line);
        *end = '\0';
        char *name = pipe_trim(s + 1);
        size_t n = strlen(name);
        for (size_t i = 0; i < n; i++)
            if (!pipe_name_char((unsigned char)name[i])) n = 0;
        if (n == 0)
            return TB_ERR(TB_EFORMAT, "%s:%d: section name '%s' is not valid (letters, digits, '_', '-', '.')",
                          ps->origin, ps->line, name);
        if (strcmp(name, "vars") == 0) {
            *section = -1;
            return TB_OK;
        }
        int rc = pipe_add_stage(ps, name, n);
        *section = ps->p->count - 1;
        return rc;
    }
    char *eq = strchr(s, '=');
    if (!eq)
        return TB_ERR(TB_EFORMAT, "%s:%d: expected 'key = value', '[section]' or a # comment, got '%.40s'",
                      ps->origin, ps->line, s);
    *eq = '\0';
    char *key = pipe_trim(s);
    char *value = pipe_trim(eq + 1);
    if (*section == -2)
        return TB_ERR(TB_EFORMAT, "%s:%d: '%s = ...' before any [section]", ps->origin, ps->line, key);
    if (*section == -1) {
        size_t n = strlen(key);
        int ok = n > 0 && !isdigit((unsigned char)key[0]);
        for (size_t i = 0; i < n; i++) ok = ok && pipe_var_char((unsigned char)key[i]);
        if (!ok)
            return TB_ERR(TB_EFORMAT, "%s:%d: '%s' is not a variable name (letters, digits, '_')", ps->origin,
                          ps->line, key);
        return pipe_add_var(ps, key, n, value);
    }
    return pipe_stage_key(ps, &ps->p->stages[*section], key, value);
}

/* ---- dependencies ------------------------------------------------------------------------ */

static int pipe_visit(tb_pipeline *p, int i, int *mark, int *stack, int depth, const char *origin)
{
    tb_pipeline_stage *s = &p->stages[i];
    if (mark[i] == 2) return TB_OK;
    if (mark[i] == 1) {
        tb_strbuf b = {0};
        int k = 0;
        while (k < depth && stack[k] != i) k++;
        for (int j = k; j < depth; j++) {
            tb_strbuf_puts(&b, p->stages[stack[j]].name);
            tb_strbuf_puts(&b, " -> ");
        }
        tb_strbuf_puts(&b, s->name);
        int rc = TB_ERR(TB_EFORMAT, "%s: the 'after' dependencies form a cycle: %s (every stage a cycle waits for "
                        "would wait forever)", origin, b.p ? b.p : s->name);
        tb_strbuf_free(&b);
        return rc;
    }
    mark[i] = 1;
    stack[depth] = i;
    s->level = 0;
    for (int a = 0; a < s->nafter; a++) {
        int d = s->after_idx[a];
        int rc = pipe_visit(p, d, mark, stack, depth + 1, origin);
        if (rc != TB_OK) return rc;
        if (p->stages[d].level + 1 > s->level) s->level = p->stages[d].level + 1;
    }
    mark[i] = 2;
    return TB_OK;
}

/* reach[i*n+j]: j must finish before i starts. */
static void pipe_reach(const tb_pipeline *p, int i, unsigned char *reach, int root)
{
    const tb_pipeline_stage *s = &p->stages[i];
    for (int a = 0; a < s->nafter; a++) {
        int d = s->after_idx[a];
        if (!reach[root * p->count + d]) {
            reach[root * p->count + d] = 1;
            pipe_reach(p, d, reach, root);
        }
    }
}

static int pipe_link(tb_pipeline *p, const char *origin)
{
    int rc = TB_OK;
    int n = p->count;
    int *mark = calloc((size_t)n + 1, sizeof *mark), *stack = calloc((size_t)n + 1, sizeof *stack);
    unsigned char *reach = calloc((size_t)n * (size_t)n + 1, 1);
    TB_CHECK(mark && stack && reach, TB_ENOMEM, "out of memory checking dependencies");
    TB_CHECK(n > 0, TB_EFORMAT, "%s: no stages (add a [name] section with run = ...)", origin);
    for (int i = 0; i < n; i++) {
        tb_pipeline_stage *s = &p->stages[i];
        TB_CHECK(s->argv, TB_EFORMAT, "%s:%d: stage [%s] has no run = ... line", origin, s->line, s->name);
        s->after_idx = calloc((size_t)s->nafter + 1, sizeof *s->after_idx);
        TB_CHECK(s->after_idx, TB_ENOMEM, "out of memory for dependencies");
        for (int a = 0; a < s->nafter; a++) {
            int d = tb_pipeline_find(p, s->after[a]);
            TB_CHECK(d >= 0, TB_EFORMAT, "%s:%d: [%s] runs after '%s', which is not a stage of this pipeline",
                     origin, s->line, s->name, s->after[a]);
            TB_CHECK(d != i, TB_EFORMAT, "%s:%d: [%s] cannot run after itself", origin, s->line, s->name);
            s->after_idx[a] = d;
        }
    }
    for (int i = 0; i < n; i++) TB_TRY(pipe_visit(p, i, mark, stack, 0, origin));
    for (int i = 0; i < n; i++) pipe_reach(p, i, reach, i);
    for (int i = 0; i < n; i++) {
        p->stages[i].concurrent = 0;
        for (int j = 0; j < n; j++)
            if (!reach[i * n + j] && !reach[j * n + i]) p->stages[i].concurrent++;
    }
error:
    free(mark);
    free(stack);
    free(reach);
    return rc;
}

/* ---- public ------------------------------------------------------------------------------ */

int tb_pipeline_parse(tb_pipeline *p, const char *text, const char *origin, char *const *overrides, int noverrides)
{
    return tb_pipeline_parse_in(p, text, origin, NULL, overrides, noverrides);
}

int tb_pipeline_parse_in(tb_pipeline *p, const char *text, const char *origin, const char *dir,
                         char *const *overrides, int noverrides)
{
    int rc = TB_OK;
    memset(p, 0, sizeof *p);
    char *buf = NULL;
    tb_strbuf logical = {0};
    origin = origin ? origin : "<pipeline>";
    p->origin = strdup(origin);
    p->dir = strdup(dir ? dir : ".");
    TB_CHECK(p->origin && p->dir, TB_ENOMEM, "out of memory");
    for (int i = 0; i < noverrides; i++) {
        const char *eq = strchr(overrides[i], '=');
        int ok = eq && eq > overrides[i] && !isdigit((unsigned char)overrides[i][0]);
        for (const char *c = overrides[i]; ok && c < eq; c++) ok = pipe_var_char((unsigned char)*c);
        TB_CHECK(ok, TB_EINVAL, "'%s' is not a variable setting (use NAME=VALUE)", overrides[i]);
    }
    pipe_parser ps = {p, overrides, noverrides, p->origin, 0};
    buf = strdup(text);
    TB_CHECK(buf, TB_ENOMEM, "out of memory");
    int section = -2, lineno = 0, start = 0;
    for (char *line = buf; line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        lineno++;
        if (logical.len == 0) start = lineno;
        size_t len = strlen(line);
        while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t')) len--;
        int cont = len > 0 && line[len - 1] == '\\' && line[0] != '#';
        TB_TRY(tb_strbuf_append(&logical, line, cont ? len - 1 : len));
        if (cont && nl) {
            TB_TRY(tb_strbuf_append(&logical, " ", 1));
        } else {
            ps.line = start;
            TB_TRY(pipe_parse_line(&ps, logical.p ? logical.p : (char *)"", &section));
            logical.len = 0;
            if (logical.p) logical.p[0] = '\0';
        }
        line = nl ? nl + 1 : NULL;
    }
    TB_TRY(pipe_link(p, p->origin));
error:
    tb_strbuf_free(&logical);
    free(buf);
    return rc;
}

int tb_pipeline_load(tb_pipeline *p, const char *path, char *const *overrides, int noverrides)
{
    int rc = TB_OK;
    memset(p, 0, sizeof *p);
    char *text = NULL;
    FILE *f = fopen(path, "rb");
    TB_CHECK(f, TB_EIO, "cannot open pipeline file '%s': %s", path, strerror(errno));
    text = malloc(PIPE_MAX_FILE + 1);
    TB_CHECK(text, TB_ENOMEM, "out of memory reading '%s'", path);
    size_t n = fread(text, 1, PIPE_MAX_FILE + 1, f);
    TB_CHECK(!ferror(f), TB_EIO, "cannot read pipeline file '%s': %s", path, strerror(errno));
    TB_CHECK(n <= PIPE_MAX_FILE, TB_EFORMAT, "pipeline file '%s' is larger than %u bytes", path, PIPE_MAX_FILE);
    TB_CHECK(memchr(text, '\0', n) == NULL, TB_EFORMAT, "pipeline file '%s' contains a NUL byte (not a text file?)",
             path);
    text[n] = '\0';
    char *abs = realpath(path, NULL);
    char *slash = abs ? strrchr(abs, '/') : NULL;
    if (slash) *slash = '\0';
    rc = tb_pipeline_parse_in(p, text, path, slash ? (abs[0] ? abs : "/") : ".", overrides, noverrides);
    free(abs);
error:
    if (f) fclose(f);
    free(text);
    return rc;
}

void tb_pipeline_free(tb_pipeline *p)
{
    for (int i = 0; i < p->count; i++) {
        tb_pipeline_stage *s = &p->stages[i];
        free(s->name);
        for (int k = 0; k < s->argc; k++) free(s->argv[k]);
        free(s->argv);
        for (int a = 0; a < s->nafter; a++) free(s->after[a]);
        free(s->after);
        free(s->after_idx);
        free(s->stdout_path);
        free(s->program);
        for (int k = 0; k < s->ndecl_outputs; k++) free(s->decl_outputs[k]);
        free(s->decl_outputs);
        for (int k = 0; k < s->ndecl_inputs; k++) free(s->decl_inputs[k]);
        free(s->decl_inputs);
    }
    free(p->stages);
    for (int i = 0; i < p->nvars; i++) {
        free(p->var_names[i]);
        free(p->var_values[i]);
    }
    free(p->var_names);
    free(p->var_values);
    free(p->origin);
    free(p->dir);
    memset(p, 0, sizeof *p);
}

int tb_pipeline_find(const tb_pipeline *p, const char *name)
{
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->stages[i].name, name) == 0) return i;
    return -1;
}

static int pipe_executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static char *pipe_search(const char *prog, const char *bin_dir)
{
    if (strchr(prog, '/')) return pipe_executable(prog) ? strdup(prog) : NULL;
    tb_strbuf b = {0};
    if (bin_dir && *bin_dir) {
        tb_strbuf_printf(&b, "%s/%s", bin_dir, prog);
        if (b.p && pipe_executable(b.p)) return b.p;
        tb_strbuf_free(&b);
    }
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *d = path; d;) {
        const char *colon = strchr(d, ':');
        size_t len = colon ? (size_t)(colon - d) : strlen(d);
        b.len = 0;
        if (len == 0) tb_strbuf_printf(&b, "./%s", prog);
        else tb_strbuf_printf(&b, "%.*s/%s", (int)len, d, prog);
        if (b.p && pipe_executable(b.p)) return b.p;
        d = colon ? colon + 1 : NULL;
    }
    tb_strbuf_free(&b);
    return NULL;
}

int tb_pipeline_resolve(tb_pipeline *p, const char *bin_dir)
{
    int rc = TB_OK, missing = 0;
    for (int i = 0; i < p->count; i++) {
        tb_pipeline_stage *s = &p->stages[i];
        free(s->program);
        s->program = pipe_search(s->argv[0], bin_dir);
        if (!s->program && missing++ == 0)
            rc = TB_ERR(TB_ENOTFOUND, "%s:%d: [%s]: program '%s' not found or not executable (looked in %s%sPATH)",
                        p->origin, s->run_line, s->name, s->argv[0], bin_dir ? bin_dir : "", bin_dir ? " and " : "");
    }
    if (missing > 1) tb_err_wrap(rc, "%d programs are missing; the first", missing);
    return rc;
}

int tb_pipeline_stage_threads(const tb_pipeline *p, int i)
{
    const tb_pipeline_stage *s = &p->stages[i];
    if (s->threads > 0) return s->threads;
    const char *env = getenv("TB_THREADS");
    int from_env = 0;
    if (env && *env && tb_threads_default(&from_env) == TB_OK) return from_env;
    int cores = tb_threads_available();
    int share = cores / (s->concurrent > 0 ? s->concurrent : 1);
    return share > 0 ? share : 1;
}

/* Appends `w` quoted for a POSIX shell when it needs it. */
static int pipe_quote(tb_strbuf *b, const char *w)
{
    int plain = *w != '\0';
    for (const char *c = w; *c && plain; c++)
        plain = isalnum((unsigned char)*c) || strchr("-_./:=+,@%^", *c);
    if (plain) return tb_strbuf_puts(b, w);
    int rc = tb_strbuf_puts(b, "'");
    for (const char *c = w; *c && rc == TB_OK; c++)
        rc = *c == '\'' ? tb_strbuf_puts(b, "'\\''") : tb_strbuf_append(b, c, 1);
    return rc == TB_OK ? tb_strbuf_puts(b, "'") : rc;
}

int tb_pipeline_write_plan(const tb_pipeline *p, FILE *out)
{
    int rc = TB_OK;
    tb_strbuf b = {0};
    int maxlevel = 0;
    for (int i = 0; i < p->count; i++)
        if (p->stages[i].level > maxlevel) maxlevel = p->stages[i].level;
    TB_TRY(tb_strbuf_printf(&b, "pipeline %s: %d stage%s\n", p->origin, p->count, p->count == 1 ? "" : "s"));
    for (int i = 0; i < p->nvars; i++)
        TB_TRY(tb_strbuf_printf(&b, "  var %s = %s\n", p->var_names[i], p->var_values[i]));
    int k = 0;
    for (int level = 0; level <= maxlevel; level++) {
        for (int i = 0; i < p->count; i++) {
            const tb_pipeline_stage *s = &p->stages[i];
            if (s->level != level) continue;
            TB_TRY(tb_strbuf_printf(&b, "%d. %s: ", ++k, s->name));
            if (s->nafter == 0) TB_TRY(tb_strbuf_puts(&b, "starts at once"));
            else TB_TRY(tb_strbuf_puts(&b, "after"));
            for (int a = 0; a < s->nafter; a++) TB_TRY(tb_strbuf_printf(&b, "%s %s", a ? "," : "", s->after[a]));
            TB_TRY(tb_strbuf_printf(&b, "; threads %d\n   ", tb_pipeline_stage_threads(p, i)));
            for (int w = 0; w < s->argc; w++) {
                if (w) TB_TRY(tb_strbuf_puts(&b, " "));
                TB_TRY(pipe_quote(&b, s->argv[w]));
            }
            if (s->stdout_path) {
                TB_TRY(tb_strbuf_puts(&b, " > "));
                TB_TRY(pipe_quote(&b, s->stdout_path));
            }
            TB_TRY(tb_strbuf_puts(&b, "\n"));
        }
    }
    TB_CHECK(fwrite(b.p, 1, b.len, out) == b.len && fflush(out) == 0, TB_EIO, "cannot write the plan: %s",
             strerror(errno));
error:
    tb_strbuf_free(&b);
    return rc;
}
