/* pipeline_check.c - checks a pipeline before running it, from each stage's --describe. */
#include "pipeline.h"
#include "pipeline_resume.h"

#include "tb/base/error.h"
#include "tb/base/json.h"
#include "tb/base/protocol.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK_DESCRIBE_SECONDS 10.0
#define CHECK_DESCRIBE_MAX (4u << 20)

static double check_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int tb_pipeline_run_describe(const char *program, const char *name, char **out)
{
    int rc = TB_OK;
    tb_strbuf b = {0};
    *out = NULL;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return TB_ERR(TB_EIO, "cannot create a pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return TB_ERR(TB_EIO, "fork failed: %s", strerror(errno));
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            dup2(devnull, STDERR_FILENO);
        }
        setenv("OMP_WAIT_POLICY", getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "PASSIVE", 1);
        execl(program, program, "--describe", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    double deadline = check_now() + CHECK_DESCRIBE_SECONDS;
    int timed_out = 0;
    for (;;) {
        double left = deadline - check_now();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd pf = {.fd = fds[0], .events = POLLIN};
        int pr = poll(&pf, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue;
        char chunk[4096];
        ssize_t got = read(fds[0], chunk, sizeof chunk);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        if (b.len + (size_t)got > CHECK_DESCRIBE_MAX) {
            rc = TB_ERR(TB_EFORMAT, "[%s]: '%s --describe' printed more than %u bytes", name, program,
                        CHECK_DESCRIBE_MAX);
            break;
        }
        if (tb_strbuf_append(&b, chunk, (size_t)got) != TB_OK) {
            rc = TB_ENOMEM;
            break;
        }
    }
    close(fds[0]);
    if (timed_out || rc != TB_OK) kill(pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (rc == TB_OK && timed_out)
        rc = TB_ERR(TB_ETIMEOUT, "[%s]: '%s --describe' did not finish within %.0f s", name, program,
                    CHECK_DESCRIBE_SECONDS);
    if (rc == TB_OK && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        char desc[96];
        tb_pipeline_describe_status(st, desc, sizeof desc);
        rc = TB_ERR(TB_EPEER, "[%s]: '%s --describe' failed (%s); is it a tinybert-c stage? (set describe = no "
                    "for other programs)", name, program, desc);
    }
    if (rc == TB_OK) rc = tb_strbuf_take(&b, out);
    tb_strbuf_free(&b);
    return rc;
}

static const cJSON *check_param(const cJSON *params, const char *name, size_t len)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, params)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (cJSON_IsString(n) && strlen(n->valuestring) == len && strncmp(n->valuestring, name, len) == 0) return it;
    }
    return NULL;
}

static const char *check_ptype(const cJSON *param)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(param, "type");
    return cJSON_IsString(t) ? t->valuestring : "";
}

/* Checks one value against a described parameter's type; 1 if fine. */
static int check_value(const cJSON *param, const char *value)
{
    const char *type = check_ptype(param);
    char *end = NULL;
    if (strcmp(type, "int") == 0) {
        (void)strtoll(value, &end, 10);
        return *value && !*end;
    }
    if (strcmp(type, "float") == 0) {
        (void)strtod(value, &end);
        return *value && !*end;
    }
    if (strcmp(type, "enum") == 0) {
        const cJSON *ch = cJSON_GetObjectItemCaseSensitive(param, "choices"), *it;
        cJSON_ArrayForEach(it, ch) if (cJSON_IsString(it) && strcmp(it->valuestring, value) == 0) return 1;
        return 0;
    }
    return 1;
}

typedef struct check_ctx {
    const tb_pipeline *p;
    FILE *report;
    int problems;
} check_ctx;

static void check_problem(check_ctx *c, int i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void check_problem(check_ctx *c, int i, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(c->report, "FAIL [%s] %s:%d: %s\n", c->p->stages[i].name, c->p->origin, c->p->stages[i].run_line, msg);
    c->problems++;
}

/* Checks the run line's --options against the description; returns the given options' values
 * through `given` (cJSON object name -> value string) for the endpoint check. */
static void check_options(check_ctx *c, int i, const cJSON *desc, cJSON *given)
{
    const tb_pipeline_stage *s = &c->p->stages[i];
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(desc, "parameters");
    for (int w = 1; w < s->argc; w++) {
        const char *a = s->argv[w];
        if (strcmp(a, "--") == 0) break;
        if (strncmp(a, "--", 2) != 0) continue; /* positional: not described beyond "args" */
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cJSON *param = check_param(params, name, len);
        int negated = 0;
        if (!param && len > 3 && strncmp(name, "no-", 3) == 0) {
            param = check_param(params, name + 3, len - 3);
            negated = param && strcmp(check_ptype(param), "bool") == 0;
            if (!negated) param = NULL;
        }
        if (!param) {
            check_problem(c, i, "unknown option '--%.*s' for %s", (int)len, name, s->argv[0]);
            continue;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value && !negated && strcmp(check_ptype(param), "bool") != 0) {
            if (w + 1 >= s->argc) {
                check_problem(c, i, "--%.*s: missing value", (int)len, name);
                continue;
            }
            value = s->argv[++w];
        }
        if (value && !check_value(param, value))
            check_problem(c, i, "--%.*s: '%s' is not a valid %s", (int)len, name, value, check_ptype(param));
        if (value) {
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)(len < 127 ? len : 127), name);
            cJSON_DeleteItemFromObjectCaseSensitive(given, key);
            cJSON_AddStringToObject(given, key, value);
        }
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, params)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "required")) && cJSON_IsString(n) &&
            !cJSON_GetObjectItemCaseSensitive(given, n->valuestring))
            check_problem(c, i, "--%s is required by %s", n->valuestring, s->argv[0]);
    }
}

static int check_field_match(const char *a, const char *b)
{
    return strcmp(a, b) == 0 || fnmatch(a, b, 0) == 0 || fnmatch(b, a, 0) == 0;
}

/* For every input port of stage j fed by an output port of stage i (same endpoint value): same
 * message kind, and every field j expects is produced by i. */
static void check_links(check_ctx *c, cJSON **desc, cJSON **given)
{
    for (int i = 0; i < c->p->count; i++) {
        if (!desc[i]) continue;
        const cJSON *op;
        cJSON_ArrayForEach(op, cJSON_GetObjectItemCaseSensitive(desc[i], "outputs"))
        {
            const cJSON *oopt = cJSON_GetObjectItemCaseSensitive(op, "option");
            const cJSON *oval = cJSON_IsString(oopt) ? cJSON_GetObjectItemCaseSensitive(given[i], oopt->valuestring) : NULL;
            if (!cJSON_IsString(oval)) continue;
            for (int j = 0; j < c->p->count; j++) {
                if (j == i || !desc[j]) continue;
                const cJSON *ip;
                cJSON_ArrayForEach(ip, cJSON_GetObjectItemCaseSensitive(desc[j], "inputs"))
                {
                    const cJSON *iopt = cJSON_GetObjectItemCaseSensitive(ip, "option");
                    const cJSON *ival =
                        cJSON_IsString(iopt) ? cJSON_GetObjectItemCaseSensitive(given[j], iopt->valuestring) : NULL;
                    if (!cJSON_IsString(ival) || strcmp(ival->valuestring, oval->valuestring) != 0) continue;
                    const cJSON *om = cJSON_GetObjectItemCaseSensitive(op, "message");
                    const cJSON *im = cJSON_GetObjectItemCaseSensitive(ip, "message");
                    if (cJSON_IsString(om) && cJSON_IsString(im) && strcmp(im->valuestring, "*") != 0 && /* any */
                        strcmp(om->valuestring, im->valuestring) != 0) {
                        check_problem(c, j, "--%s reads '%s' messages from %s, but [%s] writes '%s' messages there",
                                      iopt->valuestring, im->valuestring, ival->valuestring, c->p->stages[i].name,
                                      om->valuestring);
                        continue;
                    }
                    const cJSON *need;
                    cJSON_ArrayForEach(need, cJSON_GetObjectItemCaseSensitive(ip, "fields"))
                    {
                        const cJSON *nn = cJSON_GetObjectItemCaseSensitive(need, "name");
                        if (!cJSON_IsString(nn)) continue;
                        int found = 0;
                        const cJSON *have;
                        cJSON_ArrayForEach(have, cJSON_GetObjectItemCaseSensitive(op, "fields"))
                        {
                            const cJSON *hn = cJSON_GetObjectItemCaseSensitive(have, "name");
                            found = found || (cJSON_IsString(hn) && check_field_match(hn->valuestring, nn->valuestring));
                        }
                        if (!found)
                            check_problem(c, j, "--%s expects field '%s', which [%s] does not produce on %s",
                                          iopt->valuestring, nn->valuestring, c->p->stages[i].name, ival->valuestring);
                    }
                }
            }
        }
    }
}

int tb_pipeline_wants_describe(const tb_pipeline_stage *s)
{
    if (s->describe >= 0) return s->describe;
    const char *base = strrchr(s->argv[0], '/');
    base = base ? base + 1 : s->argv[0];
    return strncmp(base, "tb-", 3) == 0;
}

int tb_pipeline_check(const tb_pipeline *p, FILE *report)
{
    int rc = TB_OK;
    check_ctx c = {p, report, 0};
    tb_pipeline_ports *ports = NULL;
    cJSON **desc = calloc((size_t)p->count + 1, sizeof *desc);
    cJSON **given = calloc((size_t)p->count + 1, sizeof *given);
    TB_CHECK(desc && given, TB_ENOMEM, "out of memory checking %d stages", p->count);
    for (int i = 0; i < p->count; i++) {
        const tb_pipeline_stage *s = &p->stages[i];
        given[i] = cJSON_CreateObject();
        TB_CHECK(given[i], TB_ENOMEM, "out of memory");
        if (!s->program) {
            check_problem(&c, i, "program '%s' was not found", s->argv[0]);
            continue;
        }
        if (!tb_pipeline_wants_describe(s)) {
            fprintf(report, "ok   [%s] %s (not described)\n", s->name, s->program);
            continue;
        }
        char *json = NULL;
        if (tb_pipeline_run_describe(s->program, s->name, &json) != TB_OK) {
            check_problem(&c, i, "%s", tb_err_msg());
            continue;
        }
        desc[i] = cJSON_Parse(json);
        free(json);
        const cJSON *stage = cJSON_GetObjectItemCaseSensitive(desc[i], "stage");
        if (!desc[i] || !cJSON_IsString(stage) ||
            !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(desc[i], "parameters"))) {
            check_problem(&c, i, "'%s --describe' did not print a stage description (JSON with \"stage\" and "
                          "\"parameters\")", s->program);
            cJSON_Delete(desc[i]);
            desc[i] = NULL;
            continue;
        }
        int before = c.problems;
        const cJSON *proto = cJSON_GetObjectItemCaseSensitive(desc[i], "protocol");
        if (cJSON_IsNumber(proto) && proto->valuedouble != TB_PROTOCOL_VERSION)
            check_problem(&c, i, "'%s' speaks stream protocol %g, this tb-pipeline's stages protocol %d",
                          s->program, proto->valuedouble, TB_PROTOCOL_VERSION);
        check_options(&c, i, desc[i], given[i]);
        if (c.problems == before) fprintf(report, "ok   [%s] %s\n", s->name, stage->valuestring);
    }
    check_links(&c, desc, given);
    TB_CHECK(ports = calloc((size_t)p->count + 1, sizeof *ports), TB_ENOMEM, "out of memory checking %d stages",
             p->count);
    TB_TRY(tb_pipeline_ports_init(ports, p, desc));
    c.problems += tb_pipeline_check_outputs(p, ports, report);
    fflush(report);
    TB_CHECK(c.problems == 0, TB_EINVAL, "%s: %d problem%s found (listed above)", p->origin, c.problems,
             c.problems == 1 ? "" : "s");
error:
    for (int i = 0; desc && given && i < p->count; i++) {
        cJSON_Delete(desc[i]);
        cJSON_Delete(given[i]);
    }
    free(desc);
    free(given);
    if (ports) tb_pipeline_ports_free(ports, p->count);
    free(ports);
    return rc;
}
