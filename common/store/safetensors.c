/* safetensors.c - safetensors reader and writer (tb/store/safetensors.h). Little-endian hosts only. */
#include "tb/store/safetensors.h"

#include "tb/base/error.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- reading ------------------------------------------------------------------------------ */

static int is_json_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* A JSON number that is a non-negative integer <= 2^53 (exact in a double). */
static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int cmp_entry_begin(const void *a, const void *b)
{
    const tb_st_entry *x = *(const tb_st_entry *const *)a, *y = *(const tb_st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_entry_name(const void *a, const void *b)
{
    return strcmp((*(const tb_st_entry *const *)a)->name, (*(const tb_st_entry *const *)b)->name);
}

static int parse_metadata(tb_st_file *f, const cJSON *j)
{
    int rc = TB_OK;
    TB_CHECK(cJSON_IsObject(j), TB_EFORMAT, "%s: \"__metadata__\" must be an object of strings", f->path);
    int n = cJSON_GetArraySize(j);
    f->meta = calloc((size_t)(n ? n : 1), sizeof *f->meta);
    TB_CHECK(f->meta, TB_ENOMEM, "%s: out of memory for metadata", f->path);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, j)
    {
        TB_CHECK(cJSON_IsString(kv) && kv->string, TB_EFORMAT,
                 "%s: \"__metadata__\" value of '%s' is not a string", f->path, kv->string ? kv->string : "?");
        tb_st_meta *m = &f->meta[f->meta_count];
        m->key = strdup(kv->string);
        m->value = strdup(kv->valuestring);
        TB_CHECK(m->key && m->value, TB_ENOMEM, "%s: out of memory for metadata", f->path);
        f->meta_count++;
    }
error:
    return rc;
}

static int parse_entry(tb_st_file *f, const cJSON *j, tb_st_entry *e)
{
    int rc = TB_OK;
    const char *name = j->string;
    TB_CHECK(name && name[0], TB_EFORMAT, "%s: a tensor has an empty name", f->path);
    e->name = strdup(name);
    TB_CHECK(e->name, TB_ENOMEM, "%s: out of memory", f->path);
    TB_CHECK(cJSON_IsObject(j), TB_EFORMAT, "%s: tensor '%s': entry is not an object", f->path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    TB_CHECK(cJSON_IsString(dt), TB_EFORMAT, "%s: tensor '%s': missing string \"dtype\"", f->path, name);
    rc = tb_dtype_from_safetensors(dt->valuestring, strlen(dt->valuestring), &e->dtype);
    if (rc) {
        tb_err_wrap(rc, "%s: tensor '%s'", f->path, name);
        goto error;
    }
    TB_CHECK(cJSON_IsArray(sh), TB_EFORMAT, "%s: tensor '%s': missing array \"shape\"", f->path, name);
    int nd = cJSON_GetArraySize(sh);
    TB_CHECK(nd <= TB_MAX_DIMS, TB_EFORMAT, "%s: tensor '%s': rank %d exceeds the supported %d", f->path, name, nd,
             TB_MAX_DIMS);
    e->ndim = nd;
    int k = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh)
    {
        uint64_t v;
        TB_CHECK(json_uint(d, &v), TB_EFORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", f->path,
                 name, k);
        e->shape[k++] = (int64_t)v;
    }
    TB_CHECK(cJSON_IsArray(off) && cJSON_GetArraySize(off) == 2, TB_EFORMAT,
             "%s: tensor '%s': \"data_offsets\" must be [begin, end]", f->path, name);
    TB_CHECK(json_uint(cJSON_GetArrayItem(off, 0), &e->begin) && json_uint(cJSON_GetArrayItem(off, 1), &e->end),
             TB_EFORMAT, "%s: tensor '%s': data_offsets must be non-negative integers", f->path, name);
    TB_CHECK(e->begin <= e->end, TB_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] are out of order", f->path,
             name, (unsigned long long)e->begin, (unsigned long long)e->end);
    TB_CHECK(e->end <= f->data_size, TB_EFORMAT,
             "%s: tensor '%s': data_offsets end %llu is past the end of the data (%zu bytes; file truncated?)",
             f->path, name, (unsigned long long)e->end, f->data_size);
    int64_t numel;
    rc = tb_shape_numel(e->ndim, e->shape, tb_dtype_size(e->dtype), 0, &numel);
    if (rc) {
        tb_err_wrap(rc, "%s: tensor '%s'", f->path, name);
        goto error;
    }
    TB_CHECK((uint64_t)numel * tb_dtype_size(e->dtype) == e->end - e->begin, TB_EFORMAT,
             "%s: tensor '%s': shape x dtype is %llu bytes but data_offsets span %llu", f->path, name,
             (unsigned long long)((uint64_t)numel * tb_dtype_size(e->dtype)),
             (unsigned long long)(e->end - e->begin));
error:
    return rc;
}

/* Ranges must tile [0, data_size) exactly and names must be unique. */
static int check_layout(tb_st_file *f)
{
    int rc = TB_OK;
    tb_st_entry **order = malloc((size_t)(f->count ? f->count : 1) * sizeof *order);
    TB_CHECK(order, TB_ENOMEM, "%s: out of memory", f->path);
    for (int i = 0; i < f->count; i++) order[i] = &f->entries[i];
    qsort(order, (size_t)f->count, sizeof *order, cmp_entry_name);
    for (int i = 1; i < f->count; i++)
        TB_CHECK(strcmp(order[i - 1]->name, order[i]->name) != 0, TB_EFORMAT,
                 "%s: tensor name '%s' appears twice in the header", f->path, order[i]->name);
    qsort(order, (size_t)f->count, sizeof *order, cmp_entry_begin);
    uint64_t pos = 0;
    for (int i = 0; i < f->count; i++) {
        const tb_st_entry *e = order[i];
        TB_CHECK(e->begin >= pos, TB_EFORMAT, "%s: tensor '%s' bytes [%llu, %llu) overlap the previous tensor '%s'",
                 f->path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                 i ? order[i - 1]->name : "?");
        TB_CHECK(e->begin == pos, TB_EFORMAT, "%s: gap of %llu bytes before tensor '%s' (offset %llu)", f->path,
                 (unsigned long long)(e->begin - pos), e->name, (unsigned long long)e->begin);
        pos = e->end;
    }
    TB_CHECK(pos == f->data_size, TB_EFORMAT, "%s: tensors cover %llu bytes but the data section has %zu", f->path,
             (unsigned long long)pos, f->data_size);
error:
    free(order);
    return rc;
}

static int parse_header(tb_st_file *f, const char *hdr, size_t n)
{
    int rc = TB_OK;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, n, &end, 0);
    TB_CHECK(root, TB_EFORMAT, "%s: header is not valid JSON (near byte %zu of the header)", f->path,
             (size_t)((cJSON_GetErrorPtr() && cJSON_GetErrorPtr() >= hdr) ? cJSON_GetErrorPtr() - hdr : 0));
    for (const char *c = end; c < hdr + n; c++)
        TB_CHECK(is_json_space((uint8_t)*c), TB_EFORMAT, "%s: unexpected bytes after the JSON header (offset %zu)",
                 f->path, (size_t)(c - hdr) + 8);
    TB_CHECK(cJSON_IsObject(root), TB_EFORMAT, "%s: header is not a JSON object", f->path);
    int n_items = cJSON_GetArraySize(root);
    f->entries = calloc((size_t)(n_items ? n_items : 1), sizeof *f->entries);
    TB_CHECK(f->entries, TB_ENOMEM, "%s: out of memory for %d header entries", f->path, n_items);
    const cJSON *j;
    int seen_meta = 0;
    cJSON_ArrayForEach(j, root)
    {
        if (j->string && strcmp(j->string, "__metadata__") == 0) {
            TB_CHECK(!seen_meta, TB_EFORMAT, "%s: \"__metadata__\" appears twice", f->path);
            seen_meta = 1;
            TB_TRY(parse_metadata(f, j));
            continue;
        }
        tb_st_entry *e = &f->entries[f->count++];
        TB_TRY(parse_entry(f, j, e));
    }
    TB_TRY(check_layout(f));
error:
    cJSON_Delete(root);
    return rc;
}

int tb_st_open(tb_st_file *f, const char *path)
{
    int rc = TB_OK, fd = -1;
    memset(f, 0, sizeof *f);
    f->path = strdup(path ? path : "(null)");
    TB_CHECK(f->path && path, TB_EINVAL, "no safetensors path given");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    TB_CHECK(fd >= 0, TB_EIO, "cannot open safetensors file %s: %s", path, strerror(errno));
    struct stat st;
    TB_CHECK(fstat(fd, &st) == 0, TB_EIO, "cannot stat %s: %s", path, strerror(errno));
    TB_CHECK(S_ISREG(st.st_mode), TB_EFORMAT, "%s is not a regular file", path);
    TB_CHECK(st.st_size >= 8, TB_EFORMAT, "%s: %lld bytes is too short for a safetensors file (needs >= 8)", path,
             (long long)st.st_size);
    f->size = (size_t)st.st_size;
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    TB_CHECK(f->map != MAP_FAILED, TB_EIO, "cannot map %s (%zu bytes): %s", path, f->size, strerror(errno));
    close(fd);
    fd = -1;
    const uint8_t *b = f->map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    TB_CHECK(n <= TB_ST_MAX_HEADER, TB_EFORMAT, "%s: header length %llu exceeds the %u-byte limit", path,
             (unsigned long long)n, TB_ST_MAX_HEADER);
    TB_CHECK(n <= f->size - 8, TB_EFORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
             (unsigned long long)n, f->size);
    TB_CHECK(n >= 2 && b[8] == '{', TB_EFORMAT, "%s: header does not start with '{'", path);
    f->data = b + 8 + n;
    f->data_size = f->size - 8 - (size_t)n;
    TB_TRY(parse_header(f, (const char *)b + 8, (size_t)n));
    return TB_OK;
error:
    if (fd >= 0) close(fd);
    if (f->map == MAP_FAILED) f->map = NULL;
    tb_st_close(f);
    return rc;
}

void tb_st_close(tb_st_file *f)
{
    if (!f) return;
    if (f->map) munmap(f->map, f->size);
    for (int i = 0; i < f->count; i++) free(f->entries[i].name);
    free(f->entries);
    for (int i = 0; i < f->meta_count; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->meta);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const tb_st_entry *tb_st_find(const tb_st_file *f, const char *name)
{
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
    return NULL;
}

const char *tb_st_meta_get(const tb_st_file *f, const char *key)
{
    for (int i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

int tb_st_read(const tb_st_file *f, const tb_st_entry *e, void *dst, size_t dst_bytes)
{
    if (e->end - e->begin != dst_bytes)
        return TB_ERR(TB_ESHAPE, "%s: tensor '%s' has %llu bytes, destination has %zu", f->path, e->name,
                      (unsigned long long)(e->end - e->begin), dst_bytes);
    if (dst_bytes) memcpy(dst, f->data + e->begin, dst_bytes);
    return TB_OK;
}

int tb_st_read_tensor(const tb_st_file *f, const tb_st_entry *e, tb_tensor *out)
{
    int rc = tb_tensor_alloc(out, e->dtype, e->ndim, e->shape);
    if (rc) return tb_err_wrap(rc, "%s: tensor '%s'", f->path, e->name);
    rc = tb_st_read(f, e, out->data, tb_tensor_nbytes(out));
    if (rc) tb_tensor_free(out);
    return rc;
}

/* ---- writing ------------------------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string literal. */
static void sb_json_string(sbuf *b, const char *s)
{
    sb_str(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            char e[2] = {'\\', (char)*c};
            sb_put(b, e, 2);
        } else if (*c < 0x20) {
            sb_printf(b, "\\u%04x", *c);
        } else {
            sb_put(b, (const char *)c, 1);
        }
    }
    sb_str(b, "\"");
}

static int write_all(int fd, const void *p, size_t n, const char *path)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return TB_ERR(TB_EIO, "cannot write %s: %s", path, w < 0 ? strerror(errno) : "short write");
        c += w;
        n -= (size_t)w;
    }
    return TB_OK;
}

static int build_header(sbuf *b, const tb_st_item *items, int count, const tb_st_meta *meta, int meta_count)
{
    int rc = TB_OK;
    int has_format = 0;
    for (int i = 0; i < meta_count; i++) {
        TB_CHECK(meta[i].key && meta[i].value, TB_EINVAL, "safetensors metadata entry %d has a NULL key or value", i);
        if (strcmp(meta[i].key, "format") == 0) has_format = 1;
    }
    sb_str(b, "{\"__metadata__\":{");
    if (!has_format) sb_str(b, "\"format\":\"pt\"");
    for (int i = 0; i < meta_count; i++) {
        if (i || !has_format) sb_str(b, ",");
        sb_json_string(b, meta[i].key);
        sb_str(b, ":");
        sb_json_string(b, meta[i].value);
    }
    sb_str(b, "}");
    uint64_t pos = 0;
    for (int i = 0; i < count; i++) {
        const tb_tensor *t = items[i].tensor;
        const char *name = items[i].name;
        TB_CHECK(name && name[0] && t, TB_EINVAL, "safetensors item %d has no name or no tensor", i);
        TB_CHECK(strcmp(name, "__metadata__") != 0, TB_EINVAL, "a tensor may not be named \"__metadata__\"");
        for (int j = 0; j < i; j++)
            TB_CHECK(strcmp(items[j].name, name) != 0, TB_EINVAL, "tensor name '%s' given twice", name);
        const char *dt = tb_dtype_safetensors(t->dtype);
        TB_CHECK(dt, TB_EINVAL, "tensor '%s' has an invalid dtype %d", name, (int)t->dtype);
        uint64_t nbytes = (uint64_t)tb_tensor_nbytes(t);
        sb_str(b, ",");
        sb_json_string(b, name);
        sb_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", dt);
        for (int d = 0; d < t->ndim; d++) sb_printf(b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        sb_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)pos, (unsigned long long)(pos + nbytes));
        pos += nbytes;
    }
    sb_str(b, "}");
    while (b->len % 8) sb_str(b, " ");
    TB_CHECK(!b->oom, TB_ENOMEM, "out of memory building a safetensors header");
error:
    return rc;
}

int tb_st_write(const char *path, const tb_st_item *items, int count, const tb_st_meta *meta, int meta_count)
{
    int rc = TB_OK, fd = -1;
    sbuf b = {0};
    tb_tensor packed = {0};
    char tmp[4096 + 32] = "";
    TB_CHECK(path && count >= 0 && (count == 0 || items) && meta_count >= 0, TB_EINVAL,
             "tb_st_write: bad arguments");
    TB_TRY(build_header(&b, items, count, meta, meta_count));
    /* written as PATH.tmp-<pid> and renamed when complete: an existing PATH stays whole until then */
    int tn = snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    TB_CHECK(tn > 0 && (size_t)tn < sizeof tmp, TB_EINVAL, "path too long: %s", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    TB_CHECK(fd >= 0, TB_EIO, "cannot create %s: %s", tmp, strerror(errno));
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)b.len >> (8 * i));
    TB_TRY(write_all(fd, len8, 8, path));
    TB_TRY(write_all(fd, b.p, b.len, path));
    for (int i = 0; i < count; i++) {
        const tb_tensor *t = items[i].tensor;
        const tb_tensor *src = t;
        if (!tb_tensor_is_contiguous(t)) {
            TB_TRY(tb_tensor_copy(&packed, t));
            src = &packed;
        }
        size_t n = tb_tensor_nbytes(src);
        TB_CHECK(n == 0 || src->data, TB_EINVAL, "tensor '%s' has no data", items[i].name);
        if (n) TB_TRY(write_all(fd, src->data, n, path));
        tb_tensor_free(&packed);
    }
    TB_CHECK(fsync(fd) == 0, TB_EIO, "cannot fsync %s: %s", path, strerror(errno));
    int closed = close(fd);
    fd = -1;
    TB_CHECK(closed == 0, TB_EIO, "cannot close %s: %s", tmp, strerror(errno));
    TB_CHECK(rename(tmp, path) == 0, TB_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    tmp[0] = '\0';
error:
    if (fd >= 0) close(fd);
    if (tmp[0]) unlink(tmp);
    tb_tensor_free(&packed);
    free(b.p);
    return rc;
}
