/* pipeline_state.c - the state file of a run: identities of files and folders, what each step
 * ran and saw, written under a temporary name and renamed into place. */
#include "pipeline_resume.h"

#include "tb/base/error.h"
#include "tb/base/json.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATE_VERSION 1
#define STATE_MAX_BYTES (64u << 20)
#define ID_MAX_DEPTH 16
#define ID_MAX_ENTRIES 1000000

/* ---- identities -------------------------------------------------------------------------- */

typedef struct id_walk {
    uint64_t hash;
    long long files, bytes, entries;
} id_walk;

static void id_mix(id_walk *w, const void *data, size_t n)
{
    const unsigned char *c = data;
    for (size_t i = 0; i < n; i++) {
        w->hash ^= c[i];
        w->hash *= 1099511628211ull;
    }
}

static int id_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int id_skip(const char *name)
{
    size_t n = strlen(name);
    return name[0] == '.' || (n > 4 && strcmp(name + n - 4, ".tmp") == 0) || strstr(name, ".tmp.") != NULL;
}

/* Adds the entries of folder `dir` (relative name `rel`) to the walk, in name order. */
static int id_walk_dir(id_walk *w, const char *dir, const char *rel, int depth)
{
    int rc = TB_OK;
    char **names = NULL;
    int n = 0;
    DIR *d = opendir(dir);
    TB_CHECK(d, TB_EIO, "cannot read the folder '%s': %s", dir, strerror(errno));
    TB_CHECK(depth < ID_MAX_DEPTH, TB_EINVAL, "'%s' is nested more than %d folders deep", dir, ID_MAX_DEPTH);
    for (struct dirent *e; (e = readdir(d));) {
        if (id_skip(e->d_name)) continue;
        TB_CHECK(++w->entries <= ID_MAX_ENTRIES, TB_EINVAL, "'%s' holds more than %d entries", dir, ID_MAX_ENTRIES);
        char **nn = realloc(names, (size_t)(n + 1) * sizeof *nn);
        TB_CHECK(nn, TB_ENOMEM, "out of memory listing '%s'", dir);
        names = nn;
        names[n] = strdup(e->d_name);
        TB_CHECK(names[n], TB_ENOMEM, "out of memory listing '%s'", dir);
        n++;
    }
    qsort(names, (size_t)n, sizeof *names, id_cmp);
    for (int k = 0; k < n; k++) {
        tb_strbuf path = {0}, name = {0};
        tb_strbuf_printf(&path, "%s/%s", dir, names[k]);
        tb_strbuf_printf(&name, "%s%s%s", rel, *rel ? "/" : "", names[k]);
        struct stat st;
        char line[512];
        if (path.p && name.p && lstat(path.p, &st) == 0) {
            id_mix(w, name.p, name.len + 1);
            if (S_ISLNK(st.st_mode)) {
                ssize_t got = readlink(path.p, line, sizeof line - 1);
                line[got > 0 ? got : 0] = '\0';
                id_mix(w, "->", 2);
                id_mix(w, line, strlen(line) + 1);
            } else if (S_ISDIR(st.st_mode)) {
                rc = id_walk_dir(w, path.p, name.p, depth + 1);
            } else {
                snprintf(line, sizeof line, "%lld %lld.%09ld", (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                         st.st_mtim.tv_nsec);
                id_mix(w, line, strlen(line) + 1);
                w->files++;
                w->bytes += st.st_size;
            }
        }
        tb_strbuf_free(&path);
        tb_strbuf_free(&name);
        if (rc != TB_OK) goto error;
    }
error:
    if (d) closedir(d);
    for (int k = 0; k < n; k++) free(names[k]);
    free(names);
    return rc;
}

int tb_pipeline_identity(const char *path, char **out)
{
    int rc = TB_OK;
    tb_strbuf b = {0};
    struct stat st;
    *out = NULL;
    if (stat(path, &st) != 0) return errno == ENOENT || errno == ENOTDIR ? TB_OK : TB_ERR(TB_EIO, "cannot stat '%s': %s", path, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        TB_TRY(tb_strbuf_printf(&b, "file %lld %lld.%09ld", (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                                st.st_mtim.tv_nsec));
    } else if (S_ISDIR(st.st_mode)) {
        id_walk w = {.hash = 1469598103934665603ull};
        TB_TRY(id_walk_dir(&w, path, "", 0));
        TB_TRY(tb_strbuf_printf(&b, "dir %lld files %lld bytes fnv1a64:%016" PRIx64, w.files, w.bytes, w.hash));
    } else {
        TB_TRY(tb_strbuf_printf(&b, "other %o", (unsigned)st.st_mode));
    }
    TB_TRY(tb_strbuf_take(&b, out));
error:
    tb_strbuf_free(&b);
    return rc;
}

/* ---- the file ---------------------------------------------------------------------------- */

static int state_read(tb_pipeline_state *st)
{
    int rc = TB_OK;
    char *text = NULL;
    FILE *f = fopen(st->path, "rb");
    if (!f && errno == ENOENT) return TB_OK;
    TB_CHECK(f, TB_EIO, "cannot open the pipeline state '%s': %s", st->path, strerror(errno));
    text = malloc(STATE_MAX_BYTES + 1);
    TB_CHECK(text, TB_ENOMEM, "out of memory reading '%s'", st->path);
    size_t n = fread(text, 1, STATE_MAX_BYTES + 1, f);
    TB_CHECK(!ferror(f), TB_EIO, "cannot read the pipeline state '%s': %s", st->path, strerror(errno));
    TB_CHECK(n <= STATE_MAX_BYTES, TB_EFORMAT, "the pipeline state '%s' is larger than %u bytes", st->path,
             STATE_MAX_BYTES);
    text[n] = '\0';
    cJSON *root = cJSON_Parse(text);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (!root || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "steps")) || !cJSON_IsNumber(v) ||
        v->valueint != STATE_VERSION) {
        cJSON_Delete(root);
        rc = TB_ERR(TB_EFORMAT, "the pipeline state '%s' is not a version %d state file (remove it to run every "
                    "step again, or give another --state)", st->path, STATE_VERSION);
        goto error;
    }
    cJSON_Delete(st->root);
    st->root = root;
error:
    if (f) fclose(f);
    free(text);
    return rc;
}

int tb_pipeline_state_open(tb_pipeline_state *st, const char *path)
{
    int rc = TB_OK;
    memset(st, 0, sizeof *st);
    st->lock_fd = -1;
    st->path = strdup(path);
    st->root = cJSON_CreateObject();
    TB_CHECK(st->path && st->root, TB_ENOMEM, "out of memory for the pipeline state");
    cJSON_AddNumberToObject(st->root, "version", STATE_VERSION);
    cJSON_AddItemToObject(st->root, "steps", cJSON_CreateObject());
    tb_strbuf lock = {0};
    tb_strbuf_printf(&lock, "%s.lock", path);
    TB_CHECK(lock.p, TB_ENOMEM, "out of memory for the pipeline state");
    st->lock_fd = open(lock.p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    int e = errno;
    tb_strbuf_free(&lock);
    TB_CHECK(st->lock_fd >= 0, TB_EIO, "cannot create the lock of the pipeline state '%s.lock': %s (is its folder "
             "there and writable?)", path, strerror(e));
    TB_CHECK(flock(st->lock_fd, LOCK_EX | LOCK_NB) == 0, TB_EINVAL,
             "another tb-pipeline runs with the state '%s' (its lock %s.lock is held); wait for it or stop it", path,
             path);
    TB_TRY(state_read(st));
error:
    return rc;
}

void tb_pipeline_state_close(tb_pipeline_state *st)
{
    if (st->lock_fd >= 0) close(st->lock_fd); /* releases the flock */
    cJSON_Delete(st->root);
    free(st->path);
    memset(st, 0, sizeof *st);
    st->lock_fd = -1;
}

int tb_pipeline_state_save(const tb_pipeline_state *st)
{
    int rc = TB_OK;
    tb_strbuf tmp = {0};
    char *text = cJSON_Print(st->root);
    int fd = -1;
    TB_CHECK(text, TB_ENOMEM, "out of memory writing the pipeline state");
    TB_TRY(tb_strbuf_printf(&tmp, "%s.tmp", st->path));
    fd = open(tmp.p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    TB_CHECK(fd >= 0, TB_EIO, "cannot write the pipeline state '%s': %s", tmp.p, strerror(errno));
    size_t n = strlen(text), done = 0;
    while (done < n) {
        ssize_t w = write(fd, text + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        TB_CHECK(w > 0, TB_EIO, "cannot write the pipeline state '%s': %s", tmp.p, strerror(errno));
        done += (size_t)w;
    }
    TB_CHECK(write(fd, "\n", 1) == 1 && fsync(fd) == 0, TB_EIO, "cannot write the pipeline state '%s': %s", tmp.p,
             strerror(errno));
    TB_CHECK(close(fd) == 0, TB_EIO, "cannot write the pipeline state '%s': %s", tmp.p, strerror(errno));
    fd = -1;
    TB_CHECK(rename(tmp.p, st->path) == 0, TB_EIO, "cannot rename '%s' to '%s': %s", tmp.p, st->path,
             strerror(errno));
error:
    if (fd >= 0) {
        close(fd);
        unlink(tmp.p);
    }
    tb_strbuf_free(&tmp);
    free(text);
    return rc;
}

/* ---- records ----------------------------------------------------------------------------- */

int tb_pipeline_command_key(const tb_pipeline *p, int i, char **out)
{
    int rc = TB_OK;
    const tb_pipeline_stage *s = &p->stages[i];
    tb_strbuf b = {0};
    TB_TRY(tb_strbuf_puts(&b, "["));
    for (int w = 0; w < s->argc; w++) {
        if (w) TB_TRY(tb_strbuf_puts(&b, ", "));
        TB_TRY(tb_json_append_string(&b, s->argv[w]));
    }
    TB_TRY(tb_strbuf_printf(&b, "] threads %d", tb_pipeline_stage_threads(p, i)));
    if (s->stdout_path) {
        TB_TRY(tb_strbuf_puts(&b, " stdout "));
        TB_TRY(tb_json_append_string(&b, s->stdout_path));
    }
    TB_TRY(tb_strbuf_take(&b, out));
error:
    tb_strbuf_free(&b);
    return rc;
}

/* Adds {path: identity} for every path of the list that exists. */
static int state_add_identities(cJSON *obj, char *const *paths, int n)
{
    for (int k = 0; k < n; k++) {
        char *id = NULL;
        int rc = tb_pipeline_identity(paths[k], &id);
        if (rc != TB_OK) return rc;
        if (!id) continue;
        cJSON *item = cJSON_CreateString(id);
        free(id);
        if (!item) return TB_ERR(TB_ENOMEM, "out of memory for the pipeline state");
        cJSON_DeleteItemFromObjectCaseSensitive(obj, paths[k]);
        cJSON_AddItemToObject(obj, paths[k], item);
    }
    return TB_OK;
}

int tb_pipeline_record(tb_pipeline_state *st, const tb_pipeline *p, const tb_pipeline_ports *ports, int i, int done,
                       double seconds)
{
    int rc = TB_OK;
    const tb_pipeline_stage *s = &p->stages[i];
    char *command = NULL, *program = NULL;
    cJSON *rec = cJSON_CreateObject();
    cJSON *in = cJSON_CreateObject(), *out = cJSON_CreateObject();
    TB_CHECK(rec && in && out, TB_ENOMEM, "out of memory for the pipeline state");
    TB_TRY(tb_pipeline_command_key(p, i, &command));
    if (s->program) TB_TRY(tb_pipeline_identity(s->program, &program));
    TB_TRY(state_add_identities(in, ports[i].inputs, ports[i].ninputs));
    if (done) TB_TRY(state_add_identities(out, ports[i].outputs, ports[i].noutputs));
    cJSON_AddStringToObject(rec, "status", done ? "done" : "started");
    cJSON_AddStringToObject(rec, "command", command);
    cJSON_AddStringToObject(rec, "program", s->program ? s->program : s->argv[0]);
    cJSON_AddStringToObject(rec, "program_identity", program ? program : "missing");
    cJSON_AddItemToObject(rec, "inputs", in);
    cJSON_AddItemToObject(rec, "outputs", out);
    in = out = NULL;
    cJSON_AddNumberToObject(rec, "seconds", seconds);
    cJSON_AddNumberToObject(rec, "time", (double)time(NULL));
    cJSON *steps = cJSON_GetObjectItemCaseSensitive(st->root, "steps");
    cJSON_DeleteItemFromObjectCaseSensitive(steps, s->name);
    cJSON_AddItemToObject(steps, s->name, rec);
    rec = NULL;
    TB_TRY(tb_pipeline_state_save(st));
error:
    cJSON_Delete(rec);
    cJSON_Delete(in);
    cJSON_Delete(out);
    free(command);
    free(program);
    return rc;
}
