/* tb/model/ops.h - the operations BERT is built from: one forward and one backward function each.
 *
 * Conventions shared by every function here:
 * - fp32, row-major, contiguous unless a leading dimension (ld, in elements) is given.
 *   B batch, T sequence, C hidden, NH heads, HS = C / NH head size, N = B*T rows.
 *   Token ids, token types and attention masks are int32.
 * - Backward functions ACCUMULATE (+=) into every gradient they write, inputs and parameters
 *   alike; callers zero gradients. A NULL gradient pointer means "not needed" and is skipped.
 * - Forward outputs are overwritten (=).
 * - Every function returns a tb_status (tb/base/error.h). Arguments are checked (NULL pointers,
 *   non-positive sizes, token ids / types out of range) and a bad call returns TB_EINVAL with a
 *   message naming the argument; nothing is read or written in that case.
 * - Nothing allocates: buffers are the caller's (an activation arena), so a training step does
 *   no malloc. Elementwise kernels run OpenMP `parallel for` over rows; GEMMs are BLIS, always
 *   single-threaded calls: tb_linear_* cut each GEMM into fixed blocks of output rows taken
 *   dynamically by the OpenMP threads, attention runs one call per (batch, head).
 * - Deterministic: the same inputs give bit-identical outputs on the same CPU, whatever the
 *   thread count (each output element is computed by one thread in a fixed order; the GEMM
 *   blocks depend on the shapes only). Hot kernels exist in AVX-512 / AVX2 / baseline versions
 *   picked at load time; row sums (softmax, LayerNorm) may round differently between those
 *   vector widths.
 */
#ifndef TB_OPS_H
#define TB_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "tb/base/rng.h"

/* Sets the thread count of OpenMP kernels (GEMM blocks included) and of BLIS's own threading
 * (which tinybert-c's kernels do not use) (n >= 1). */
int tb_ops_set_threads(int n);
/* The thread count OpenMP kernels use now. */
int tb_ops_threads(void);

/* ---- dropout --------------------------------------------------------------------------------
 * The mask of element i (its position in the tensor, from 0) is
 *   u = tb_rng_uniform(key, stream_hi = batch_seq, stream_lo = site, element i)
 *   keep = (u >= p), kept values scaled by 1 / (1 - p).
 * so a batch recomputed after a restart gets the same masks. The backward REGENERATES the mask
 * from the same descriptor (nothing is stored). p == 0 (or a NULL descriptor) is the identity. */
typedef struct tb_dropout {
    float p;             /* drop probability, 0 <= p < 1; 0 = dropout off */
    tb_rng_key key;      /* tb_rng_key_make(seed, TB_RNG_DROPOUT) */
    uint32_t batch_seq;  /* batch sequence number (stream_hi) */
    uint32_t site;       /* layer * 16 + site within the layer (stream_lo) */
} tb_dropout;

/* out[n] = dropout(in[n]). out may equal in (in place). */
int tb_dropout_forward(float *out, const float *in, size_t n, const tb_dropout *d);
/* din[n] += dout[n] * keep[i] / (1 - p). */
int tb_dropout_backward(float *din, const float *dout, size_t n, const tb_dropout *d);

/* ---- linear ---------------------------------------------------------------------------------
 * out[N,O] = in[N,I] . W[O,I]^T + b[O]     (W is [out, in] as in PyTorch; b may be NULL)
 * BLIS sgemm on blocks of ~N/8 rows, >= 512 (dW: ~O/2 rows), one single-threaded call per block,
 * blocks shared dynamically by the tb_ops_set_threads threads (a thread descheduled by another
 * process leaves its blocks to the others instead of stalling a threaded GEMM). */
int tb_linear_forward(float *out, const float *in, const float *w, const float *b,
                      int N, int I, int O);
/* din[N,I] += dout[N,O] . W[O,I];  dW[O,I] += dout^T . in;  db[O] += sum_n dout[n,:].
 * din, dw, db may each be NULL. */
int tb_linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                       const float *w, int N, int I, int O);

/* ---- layernorm ------------------------------------------------------------------------------
 * out[N,C] = (in - mean) * rstd * w[C] + b[C],  mean[N], rstd[N] = 1/sqrt(var + eps) saved
 * (biased variance, as torch.nn.LayerNorm). */
int tb_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w,
                         const float *b, int N, int C, float eps);
/* din[N,C] +=, dw[C] +=, db[C] += (any may be NULL); uses the saved mean / rstd. */
int tb_layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                          const float *w, const float *mean, const float *rstd, int N, int C);

/* ---- elementwise ----------------------------------------------------------------------------
 * GELU, exact erf form: gelu(x) = 0.5 x (1 + erf(x / sqrt 2)).  out may equal in. */
int tb_gelu_forward(float *out, const float *in, size_t n);
/* din[n] += dout * gelu'(in). `in` is the forward INPUT. */
int tb_gelu_backward(float *din, const float *in, const float *dout, size_t n);
/* out[N,O] = gelu(pre[N,O] + b[O]) with pre[N,O] += b[O] done in place first (pre is then the
 * GELU input a backward needs): the bias add of a linear layer fused with its activation.
 * Use with tb_linear_forward(pre, in, w, NULL, ...); the backward is tb_gelu_backward into
 * dpre, then tb_linear_backward(..., db, dpre, ...). */
int tb_bias_gelu_forward(float *out, float *pre, const float *b, int N, int O);

/* tanh (the pooler). out may equal in. */
int tb_tanh_forward(float *out, const float *in, size_t n);
/* din[n] += dout * (1 - out^2). `out` is the forward OUTPUT. */
int tb_tanh_backward(float *din, const float *out, const float *dout, size_t n);

/* relu (the TinyBERT classification head): x > 0 ? x : 0, and NaN stays NaN (as torch.relu). out may equal in. */
int tb_relu_forward(float *out, const float *in, size_t n);
/* din[n] += dout * (out > 0). `out` is the forward OUTPUT. */
int tb_relu_backward(float *din, const float *out, const float *dout, size_t n);

/* out[n] = a[n] + b[n] (residual connection). out may equal a or b. */
int tb_add_forward(float *out, const float *a, const float *b, size_t n);
/* dst[n] += src[n]: the backward of an add, once per input. */
int tb_accumulate(float *dst, const float *src, size_t n);

/* ---- embeddings -----------------------------------------------------------------------------
 * out[B,T,C] = wte[ids[b,t]] + wpe[t] + wtt[types[b,t]]
 *   ids [B,T] in [0, V), types [B,T] in [0, n_types) (NULL = all 0), positions 0..T-1,
 *   wte [V,C], wpe [max_pos,C] (T <= max_pos), wtt [n_types,C].
 * (LayerNorm and dropout follow as separate ops.) */
int tb_embedding_forward(float *out, const int32_t *ids, const int32_t *types,
                         const float *wte, const float *wpe, const float *wtt,
                         int B, int T, int C, int V, int max_pos, int n_types);
/* dwte[ids[b,t]] += dout[b,t]  except where ids[b,t] == pad_id (padding_idx; pad_id < 0: none),
 * dwpe[t] += sum_b dout[b,t],  dwtt[types[b,t]] += dout[b,t].  Any gradient may be NULL. */
int tb_embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout,
                          const int32_t *ids, const int32_t *types,
                          int B, int T, int C, int V, int max_pos, int n_types, int pad_id);

/* ---- small GEMM --------------------------------------------------------------------------
 * C[m,n] = alpha * A B (accumulate = 0: C is overwritten, never read) or alpha * A B + C
 * (accumulate = 1), single-threaded, for the per-head products of attention.
 *   A element (i, p) at a[i*rsa + p*csa] (any strides: A^T is rsa = 1, csa = rows of A),
 *   B row-major [k, n] with row stride ldb and unit column stride, C row-major with row stride ldc.
 * Each element of C is summed over p in increasing order whatever m and n are, so a row computed
 * alone equals the same row computed in a larger product. Vector width chosen at run time
 * (AVX-512F, AVX2 + FMA, plain C; the environment variable TB_GEMM_ISA = avx2 | scalar caps it). */
void tb_gemm_small(int m, int n, int k, float alpha, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                   const float *b, ptrdiff_t ldb, int accumulate, float *c, ptrdiff_t ldc);

/* ---- self-attention core --------------------------------------------------------------------
 * Inputs q, k, v: row (b,t) of each at q + (b*T + t) * ld_qkv, head h in columns
 * [h*HS, (h+1)*HS). A fused QKV linear output [B,T,3C] is passed as q = qkv, k = qkv + C,
 * v = qkv + 2C, ld_qkv = 3C (no copy); three separate [B,T,C] tensors with ld_qkv = C.
 *   scores[B,NH,T,T] = Q K^T / sqrt(HS) + (1 - mask[b,s]) * (-10000)   (PRE-softmax, saved: the
 *                      TinyBERT attention loss reads these; mask NULL = all ones)
 *   probs [B,NH,T,T] = softmax over s of scores (before dropout, saved for the backward; may be
 *                      NULL when the backward recomputes it: tb_attention_backward_scores)
 *   ctx   [B,T,C]    = dropout(probs) V, heads concatenated (ctx[b,t,h*HS + d])
 * The softmax is computed from the raw scores and the mask separately, so probs are exact even
 * for a sequence with no unmasked key; the saved fp32 scores of masked keys (~ -10000) carry
 * their fp32 rounding (ulp 1e-3), which the attention loss ignores (entries <= -100 -> 0).
 * Attention-probs dropout element index = position in [B,NH,T,T]; `drop` may be NULL (off).
 * Runs an OpenMP loop over (batch, head) with single-threaded tb_gemm_small products. `scratch`
 * is per thread working memory: at least tb_attention_scratch_floats(T, HS, 1) floats; with
 * tb_attention_scratch_floats(T, HS, nt) floats up to nt threads are used. */
size_t tb_attention_scratch_floats(int T, int HS, int nthreads);
int tb_attention_forward(float *ctx, float *scores, float *probs,
                         const float *q, const float *k, const float *v, int ld_qkv,
                         const int32_t *mask, int B, int T, int NH, int HS,
                         const tb_dropout *drop, float *scratch, size_t scratch_floats);
/* dq, dk, dv (same layout as q, k, v with ld_dqkv; e.g. dqkv, dqkv + C, dqkv + 2C, 3C) +=
 * the gradients from dctx[B,T,C] and from dscores_extra[B,NH,T,T] (a gradient on the
 * PRE-softmax scores, e.g. from the attention loss; NULL = none). Uses the saved probs. */
int tb_attention_backward(float *dq, float *dk, float *dv, int ld_dqkv,
                          const float *dctx, const float *dscores_extra, const float *probs,
                          const float *q, const float *k, const float *v, int ld_qkv,
                          int B, int T, int NH, int HS,
                          const tb_dropout *drop, float *scratch, size_t scratch_floats);
/* The same, recomputing probs from the saved scores (saves [B,NH,T,T] floats per layer; costs one
 * softmax). Identical results unless a sequence has no unmasked key at all, where the recomputed
 * probabilities carry the fp32 rounding of scores near -10000 (~1e-3 relative). */
int tb_attention_backward_scores(float *dq, float *dk, float *dv, int ld_dqkv,
                                 const float *dctx, const float *dscores_extra, const float *scores,
                                 const float *q, const float *k, const float *v, int ld_qkv,
                                 int B, int T, int NH, int HS,
                                 const tb_dropout *drop, float *scratch, size_t scratch_floats);

#endif
