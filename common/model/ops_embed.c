/* BERT embeddings: word + position + token type (LayerNorm and dropout are separate ops). */
#include "tb/model/ops.h"

#include "tb/base/error.h"

#include <omp.h>

#include "ops_math.h"

static int embed_check(const char *fn, const int32_t *ids, const int32_t *types, int B, int T,
                       int C, int V, int max_pos, int n_types)
{
    if (!ids) return TB_ERR(TB_EINVAL, "%s: NULL token ids", fn);
    if (B <= 0 || T <= 0 || C <= 0 || V <= 0 || n_types <= 0)
        return TB_ERR(TB_EINVAL, "%s: B, T, C, V, n_types must be > 0, got B=%d T=%d C=%d V=%d n_types=%d",
                      fn, B, T, C, V, n_types);
    if ((long long)B * T > 0x7fffffffLL)
        return TB_ERR(TB_EINVAL, "%s: B*T = %lld tokens is too many", fn, (long long)B * T);
    if (T > max_pos)
        return TB_ERR(TB_EINVAL, "%s: sequence length %d exceeds max_position_embeddings %d; "
                      "truncate inputs to at most %d tokens", fn, T, max_pos, max_pos);
    for (int i = 0; i < B * T; i++) {
        if (ids[i] < 0 || ids[i] >= V)
            return TB_ERR(TB_EINVAL, "%s: token id %d at [batch %d, position %d] is outside the vocabulary [0, %d)",
                          fn, (int)ids[i], i / T, i % T, V);
        if (types && (types[i] < 0 || types[i] >= n_types))
            return TB_ERR(TB_EINVAL, "%s: token type %d at [batch %d, position %d] is outside [0, %d)",
                          fn, (int)types[i], i / T, i % T, n_types);
    }
    return TB_OK;
}

int tb_embedding_forward(float *out, const int32_t *ids, const int32_t *types,
                         const float *wte, const float *wpe, const float *wtt,
                         int B, int T, int C, int V, int max_pos, int n_types)
{
    if (!out || !wte || !wpe || !wtt)
        return TB_ERR(TB_EINVAL, "tb_embedding_forward: NULL out, wte, wpe or wtt");
    int rc = embed_check("tb_embedding_forward", ids, types, B, T, C, V, max_pos, n_types);
    if (rc != TB_OK) return rc;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < B * T; i++) {
        const float *restrict we = wte + (size_t)ids[i] * C;
        const float *restrict pe = wpe + (size_t)(i % T) * C;
        const float *restrict te = wtt + (size_t)(types ? types[i] : 0) * C;
        float *restrict o = out + (size_t)i * C;
#pragma omp simd
        for (int j = 0; j < C; j++) o[j] = we[j] + pe[j] + te[j];
    }
    return TB_OK;
}

int tb_embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout,
                          const int32_t *ids, const int32_t *types,
                          int B, int T, int C, int V, int max_pos, int n_types, int pad_id)
{
    if (!dout) return TB_ERR(TB_EINVAL, "tb_embedding_backward: NULL dout");
    int rc = embed_check("tb_embedding_backward", ids, types, B, T, C, V, max_pos, n_types);
    if (rc != TB_OK) return rc;
    /* Rows may repeat a token id, so threads own blocks of columns, rows go in order. */
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int j0 = (int)((long long)C * t / nt), j1 = (int)((long long)C * (t + 1) / nt);
        for (int i = 0; i < B * T; i++) {
            const float *restrict g = dout + (size_t)i * C;
            if (dwte && ids[i] != pad_id) {
                float *restrict d = dwte + (size_t)ids[i] * C;
#pragma omp simd
                for (int j = j0; j < j1; j++) d[j] += g[j];
            }
            if (dwpe) {
                float *restrict d = dwpe + (size_t)(i % T) * C;
#pragma omp simd
                for (int j = j0; j < j1; j++) d[j] += g[j];
            }
            if (dwtt) {
                float *restrict d = dwtt + (size_t)(types ? types[i] : 0) * C;
#pragma omp simd
                for (int j = j0; j < j1; j++) d[j] += g[j];
            }
        }
    }
    return TB_OK;
}
