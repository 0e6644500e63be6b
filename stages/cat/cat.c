/* cat.c - message summaries for tb-cat (cat.h). */
#include "cat.h"

#include "tb/base/error.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

static double elem(const void *p, tb_dtype dt, int64_t i)
{
    switch (dt) {
    case TB_F32: return ((const float *)p)[i];
    case TB_F16: return tb_f16_to_f32(((const uint16_t *)p)[i]);
    case TB_BF16: return tb_bf16_to_f32(((const uint16_t *)p)[i]);
    case TB_F64: return ((const double *)p)[i];
    case TB_I8: return ((const int8_t *)p)[i];
    case TB_I16: return ((const int16_t *)p)[i];
    case TB_I32: return ((const int32_t *)p)[i];
    case TB_I64: return (double)((const int64_t *)p)[i];
    case TB_U8: return ((const uint8_t *)p)[i];
    case TB_U16: return ((const uint16_t *)p)[i];
    case TB_U32: return ((const uint32_t *)p)[i];
    case TB_U64: return (double)((const uint64_t *)p)[i];
    case TB_BOOL: return ((const uint8_t *)p)[i] != 0;
    default: return NAN;
    }
}

int tb_cat_tensor_stats(const tb_tensor *t, tb_cat_stats *out)
{
    int rc = TB_OK;
    tb_tensor c = {0};
    const tb_tensor *s = t;
    memset(out, 0, sizeof *out);
    if (!tb_tensor_is_contiguous(t)) {
        TB_TRY(tb_tensor_copy(&c, t));
        s = &c;
    }
    out->n = tb_tensor_numel(s);
    double sum = 0, lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < out->n; i++) {
        double v = elem(s->data, s->dtype, i);
        if (isnan(v)) out->nan++;
        else if (isinf(v)) out->inf++;
        else {
            out->finite++;
            sum += v;
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
    }
    if (out->finite) {
        out->min = lo;
        out->max = hi;
        out->mean = sum / (double)out->finite;
        double ss = 0; /* second pass: numerically sound variance */
        for (int64_t i = 0; i < out->n; i++) {
            double v = elem(s->data, s->dtype, i);
            if (isfinite(v)) ss += (v - out->mean) * (v - out->mean);
        }
        out->std = sqrt(ss / (double)out->finite);
    }
error:
    tb_tensor_free(&c);
    return rc;
}

static const char *dtype_str(tb_dtype dt)
{
    const char *np = tb_dtype_numpy(dt);
    return np ? np : tb_dtype_name(dt);
}

static int shape_text(tb_strbuf *b, const tb_tensor *t)
{
    int rc = tb_strbuf_puts(b, "[");
    for (int d = 0; !rc && d < t->ndim; d++) rc = tb_strbuf_printf(b, "%s%" PRId64, d ? ", " : "", t->shape[d]);
    return rc ? rc : tb_strbuf_puts(b, "]");
}

int tb_cat_format_text(const tb_msg *m, int stats, tb_strbuf *b)
{
    int rc = TB_OK;
    for (int i = 0; i < m->count; i++) {
        const tb_field *f = &m->fields[i];
        TB_TRY(tb_strbuf_printf(b, "  %-24s ", f->key));
        switch (f->kind) {
        case TB_VAL_NIL: TB_TRY(tb_strbuf_puts(b, "nil")); break;
        case TB_VAL_BOOL: TB_TRY(tb_strbuf_printf(b, "bool   %s", f->v.b ? "true" : "false")); break;
        case TB_VAL_INT: TB_TRY(tb_strbuf_printf(b, "int    %" PRId64, f->v.i)); break;
        case TB_VAL_FLOAT: TB_TRY(tb_strbuf_printf(b, "float  %.9g", f->v.f)); break;
        case TB_VAL_STR: TB_TRY(tb_strbuf_printf(b, "str    \"%.*s\"%s", (int)(f->v.str.len > 80 ? 80 : f->v.str.len),
                                                 f->v.str.ptr, f->v.str.len > 80 ? "..." : ""));
            break;
        case TB_VAL_TENSOR: {
            const tb_tensor *t = &f->v.tensor;
            TB_TRY(tb_strbuf_printf(b, "%-6s ", dtype_str(t->dtype)));
            TB_TRY(shape_text(b, t));
            TB_TRY(tb_strbuf_printf(b, " %zu bytes", tb_tensor_nbytes(t)));
            if (stats && tb_tensor_numel(t) > 0) {
                tb_cat_stats st;
                TB_TRY(tb_cat_tensor_stats(t, &st));
                TB_TRY(tb_strbuf_printf(b, "  min %.6g max %.6g mean %.6g std %.6g", st.min, st.max, st.mean, st.std));
                if (st.nan || st.inf)
                    TB_TRY(tb_strbuf_printf(b, "  nan %" PRId64 " inf %" PRId64, st.nan, st.inf));
            }
            break;
        }
        }
        TB_TRY(tb_strbuf_puts(b, "\n"));
    }
error:
    return rc;
}

static int json_key(tb_strbuf *b, const char *k)
{
    int rc = tb_json_append_string(b, k);
    return rc ? rc : tb_strbuf_puts(b, ":");
}

int tb_cat_format_json(const tb_msg *m, int stats, tb_strbuf *b)
{
    int rc = TB_OK;
    TB_TRY(tb_strbuf_puts(b, "{"));
    const tb_field *seq = tb_msg_find(m, "seq"), *kind = tb_msg_find(m, "msg");
    TB_TRY(tb_strbuf_puts(b, "\"seq\":"));
    if (seq && seq->kind == TB_VAL_INT) TB_TRY(tb_strbuf_printf(b, "%" PRId64, seq->v.i));
    else TB_TRY(tb_strbuf_puts(b, "null"));
    TB_TRY(tb_strbuf_puts(b, ",\"msg\":"));
    TB_TRY(tb_json_append_string(b, kind && kind->kind == TB_VAL_STR ? kind->v.str.ptr : NULL));
    TB_TRY(tb_strbuf_puts(b, ",\"fields\":["));
    for (int i = 0; i < m->count; i++) {
        const tb_field *f = &m->fields[i];
        TB_TRY(tb_strbuf_puts(b, i ? ",{" : "{"));
        TB_TRY(json_key(b, "name"));
        TB_TRY(tb_json_append_string(b, f->key));
        static const char *const kinds[] = {"nil", "bool", "int", "float", "str", "tensor"};
        TB_TRY(tb_strbuf_puts(b, ","));
        TB_TRY(json_key(b, "kind"));
        TB_TRY(tb_json_append_string(b, kinds[f->kind]));
        TB_TRY(tb_strbuf_puts(b, ","));
        switch (f->kind) {
        case TB_VAL_NIL: TB_TRY(tb_strbuf_puts(b, "\"value\":null")); break;
        case TB_VAL_BOOL: TB_TRY(tb_strbuf_printf(b, "\"value\":%s", f->v.b ? "true" : "false")); break;
        case TB_VAL_INT: TB_TRY(tb_strbuf_printf(b, "\"value\":%" PRId64, f->v.i)); break;
        case TB_VAL_FLOAT:
            TB_TRY(tb_strbuf_puts(b, "\"value\":"));
            TB_TRY(tb_json_append_float(b, f->v.f));
            break;
        case TB_VAL_STR:
            TB_TRY(tb_strbuf_puts(b, "\"value\":"));
            TB_TRY(tb_json_append_string(b, f->v.str.ptr));
            break;
        case TB_VAL_TENSOR: {
            const tb_tensor *t = &f->v.tensor;
            TB_TRY(json_key(b, "dtype"));
            TB_TRY(tb_json_append_string(b, dtype_str(t->dtype)));
            TB_TRY(tb_strbuf_puts(b, ",\"shape\":["));
            for (int d = 0; d < t->ndim; d++) TB_TRY(tb_strbuf_printf(b, "%s%" PRId64, d ? "," : "", t->shape[d]));
            TB_TRY(tb_strbuf_printf(b, "],\"bytes\":%zu", tb_tensor_nbytes(t)));
            if (stats) {
                tb_cat_stats st;
                TB_TRY(tb_cat_tensor_stats(t, &st));
                TB_TRY(tb_strbuf_printf(b, ",\"stats\":{\"n\":%" PRId64 ",\"nan\":%" PRId64 ",\"inf\":%" PRId64,
                                        st.n, st.nan, st.inf));
                const char *names[4] = {"min", "max", "mean", "std"};
                double vals[4] = {st.min, st.max, st.mean, st.std};
                for (int k = 0; k < 4; k++) {
                    TB_TRY(tb_strbuf_printf(b, ",\"%s\":", names[k]));
                    if (st.finite) TB_TRY(tb_json_append_float(b, vals[k]));
                    else TB_TRY(tb_strbuf_puts(b, "null"));
                }
                TB_TRY(tb_strbuf_puts(b, "}"));
            }
            break;
        }
        }
        TB_TRY(tb_strbuf_puts(b, "}"));
    }
    TB_TRY(tb_strbuf_puts(b, "]}"));
error:
    return rc;
}
