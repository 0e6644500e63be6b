/* check.c - tb-emit's check mode (check.h): the distillation loss and every student gradient of
 * one batch, written for comparison with other implementations. Not part of the emitter's
 * production path (emit.c). */
#include "check.h"

#include "emit.h"
#include "tb/base/error.h"
#include "tb/base/json.h"
#include "tb/base/outfile.h"
#include "tb/store/safetensors.h"
#include "tb/text/batch_msg.h"
#include "tb/wire/codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void tb_emit_check_opts_default(tb_emit_check_opts *o)
{
    memset(o, 0, sizeof *o);
    o->kind = TB_DISTILL_INTERMEDIATE;
    o->temperature = 1.0f;
    o->dtype = TB_F32;
    o->seed = 42;
}

static int write_losses_json(const char *path, const tb_emit_check_opts *o, const tb_bert_distill_losses *l,
                             const tb_features_meta *tm, const tb_bert_config *sc, int B, int T)
{
    int rc = TB_OK;
    tb_strbuf s = {0};
    tb_outfile f = {0};
    TB_TRY(tb_strbuf_printf(&s, "{\n  \"kind\": \"%s\",\n", o->kind == TB_DISTILL_PREDICTION ? "prediction" : "intermediate"));
    const char *names[5] = {"att", "hidden", "emb", "pred", "total"};
    double vals[5] = {l->att, l->hidden, l->emb, l->pred, l->total};
    for (int i = 0; i < 5; i++) {
        TB_TRY(tb_strbuf_printf(&s, "  \"%s\": ", names[i]));
        char num[64];
        snprintf(num, sizeof num, "%.17g", vals[i]);
        TB_TRY(tb_strbuf_puts(&s, num));
        TB_TRY(tb_strbuf_puts(&s, ",\n"));
    }
    TB_TRY(tb_strbuf_printf(&s, "  \"temperature\": %.9g,\n  \"feature_dtype\": \"%s\",\n", (double)o->temperature,
                            o->dtype == TB_F16 ? "f16" : "f32"));
    TB_TRY(tb_strbuf_printf(&s, "  \"teacher_dropout\": %s,\n  \"student_dropout\": %s,\n  \"seed\": %llu,\n",
                            o->teacher_dropout ? "true" : "false", o->student_dropout ? "true" : "false",
                            (unsigned long long)o->seed));
    TB_TRY(tb_strbuf_printf(&s, "  \"batch_index\": %lld,\n  \"batch_size\": %d,\n  \"seq_len\": %d,\n",
                            (long long)o->index, B, T));
    TB_TRY(tb_strbuf_printf(&s, "  \"teacher_layers\": %d,\n  \"student_layers\": %d,\n  \"teacher_config_hash\": ",
                            tm->layers, sc->num_hidden_layers));
    TB_TRY(tb_json_append_string(&s, tm->config_hash));
    TB_TRY(tb_strbuf_puts(&s, ",\n  \"teacher\": "));
    TB_TRY(tb_json_append_string(&s, o->teacher));
    TB_TRY(tb_strbuf_puts(&s, ",\n  \"student\": "));
    TB_TRY(tb_json_append_string(&s, o->student));
    TB_TRY(tb_strbuf_puts(&s, ",\n  \"input\": "));
    TB_TRY(tb_json_append_string(&s, o->input));
    TB_TRY(tb_strbuf_puts(&s, ",\n  \"gradients\": \"gradients.safetensors\"\n}\n"));
    TB_TRY(tb_outfile_open(&f, path));
    TB_CHECK(fwrite(s.p, 1, s.len, f.f) == s.len, TB_EIO, "writing %s failed: %s", f.tmp, strerror(errno));
    TB_TRY(tb_outfile_commit(&f));
error:
    tb_outfile_abort(&f);
    tb_strbuf_free(&s);
    return rc;
}

static int write_grads(const char *path, const tb_bert_model *m, const tb_bert_distill_losses *l,
                       const tb_emit_check_opts *o)
{
    int rc = TB_OK;
    tb_st_item *items = calloc((size_t)m->params.count, sizeof *items);
    TB_CHECK(items, TB_ENOMEM, "out of memory listing %d gradients", m->params.count);
    for (int i = 0; i < m->params.count; i++) {
        items[i].name = m->params.items[i].name;
        items[i].tensor = &m->params.items[i].grad;
    }
    char total[64], kind[32];
    snprintf(total, sizeof total, "%.17g", l->total);
    snprintf(kind, sizeof kind, "%s", o->kind == TB_DISTILL_PREDICTION ? "prediction" : "intermediate");
    tb_st_meta meta[3] = {{"producer", "tb-emit --check"}, {"loss_total", total}, {"kind", kind}};
    TB_TRY(tb_st_write(path, items, m->params.count, meta, 3));
error:
    free(items);
    return rc;
}

static int check_opts_valid(const tb_emit_check_opts *o)
{
    int rc = TB_OK;
    TB_CHECK(o && o->teacher && o->student && o->input && o->out_dir, TB_EINVAL,
             "check mode needs --teacher, --student, --input (a message file) and --check-out");
    TB_CHECK(!tb_emit_is_stream(o->input), TB_EINVAL, "check mode reads one batch from a message file, not %s",
             o->input);
    TB_CHECK(o->index >= 0, TB_EINVAL, "--check-index must be >= 0");
    TB_CHECK(o->kind == TB_DISTILL_INTERMEDIATE || o->kind == TB_DISTILL_PREDICTION, TB_EINVAL, "unknown loss kind");
    TB_CHECK(o->temperature > 0, TB_EINVAL, "--temperature must be > 0");
error:
    return rc;
}

/* Loads teacher and student (with o->threads) and checks that their vocabularies agree. */
static int load_models(const tb_emit_check_opts *o, tb_bert_model *t, tb_bert_model *s)
{
    int rc = TB_OK;
    char tvh[TB_FEATURES_HASH_MAX], svh[TB_FEATURES_HASH_MAX];
    TB_TRY(tb_emit_load_model(o->teacher, t, tvh, sizeof tvh));
    TB_TRY(tb_emit_load_model(o->student, s, svh, sizeof svh));
    if (o->threads > 0) {
        tb_bert_set_threads(t, o->threads);
        tb_bert_set_threads(s, o->threads);
    }
    TB_CHECK(!tvh[0] || !svh[0] || !strcmp(tvh, svh), TB_EFORMAT,
             "teacher vocabulary %s and student vocabulary %s differ", tvh, svh);
error:
    return rc;
}

/* What the student of loss `o->kind` asks the teacher for (`req`), resolved against the
 * teacher's facts `tm` (`res`). */
static int student_request(const tb_emit_check_opts *o, const tb_bert_model *t, const tb_bert_model *s,
                           const tb_features_meta *tm, tb_features_request *req, tb_features_request *res)
{
    int rc = TB_OK;
    memset(req, 0, sizeof *req);
    if (o->kind == TB_DISTILL_INTERMEDIATE) {
        TB_CHECK(s->config.fit_size > 0, TB_EINVAL,
                 "student %s has no fit_dense (fit_size 0); the intermediate loss needs it", o->student);
        req->student_layers = s->config.num_hidden_layers;
        req->student_heads = s->config.num_attention_heads;
        req->expect_hidden_size = s->config.fit_size;
    } else {
        TB_CHECK(s->config.head != TB_HEAD_NONE, TB_EINVAL, "student %s has no classification head", o->student);
        TB_CHECK(s->config.num_labels == t->config.num_labels, TB_ESHAPE, "student has %d labels, teacher %d",
                 s->config.num_labels, t->config.num_labels);
        req->logits = 1;
    }
    TB_TRY(tb_features_request_resolve(req, tm, "the student", res));
error:
    return rc;
}

/* The model's view of a token batch. */
static tb_bert_batch bert_batch(const tb_batch *b)
{
    tb_bert_batch bb = {.B = (int)b->input_ids.shape[0], .T = (int)b->input_ids.shape[1],
                        .input_ids = b->input_ids.data, .token_type_ids = b->token_type_ids.data,
                        .attention_mask = b->attention_mask.data};
    return bb;
}

/* Runs the teacher on batch `b` and puts its features `res` into `fm` as a student would receive
 * them: encoded into `wire` and decoded again. */
static int teacher_features(const tb_emit_check_opts *o, tb_bert_model *t, const tb_features_request *res,
                            const tb_features_meta *tm, const tb_batch *b, tb_buf *wire, tb_msg *fm)
{
    int rc = TB_OK;
    const tb_bert_batch bb = bert_batch(b);
    TB_TRY(tb_bert_arena_reserve(t, bb.B, bb.T, TB_BERT_INFER, res->attn, 0));
    tb_bert_run tr = {.dropout = o->teacher_dropout, .seed = o->seed, .seq = (uint64_t)o->index};
    tb_features_run_flags(res, &tr);
    TB_TRY(tb_bert_forward(t, &bb, &tr));
    TB_TRY(tb_msg_set_tensor_ref(fm, "input_ids", &b->input_ids));
    TB_TRY(tb_features_add(fm, t, res, tm, bb.B, bb.T, NULL));
    TB_TRY(tb_codec_encode(fm, wire)); /* the bytes a student would receive */
    tb_msg_free(fm);
    TB_TRY(tb_codec_decode(wire->data, wire->len, fm, 0, NULL));
error:
    return rc;
}

/* The student on batch `b`: forward, the loss against the teacher's features `v`, backward
 * (gradients in s->params); nothing is updated. */
static int student_gradients(const tb_emit_check_opts *o, tb_bert_model *s, const tb_batch *b,
                             const tb_features_view *v, tb_bert_distill_losses *l)
{
    int rc = TB_OK;
    const tb_bert_batch bb = bert_batch(b);
    TB_TRY(tb_bert_arena_reserve(s, bb.B, bb.T, TB_BERT_TRAIN, 0, 0));
    tb_bert_run sr = {.dropout = o->student_dropout, .seed = o->seed, .seq = (uint64_t)o->index,
                      .logits = o->kind == TB_DISTILL_PREDICTION};
    TB_TRY(tb_bert_forward(s, &bb, &sr));
    tb_bert_zero_grad(s);
    tb_bert_grads g;
    const float *gold = s->config.num_labels == 1 && b->labels.dtype == TB_F32 ? b->labels.data : NULL;
    TB_CHECK(o->kind != TB_DISTILL_PREDICTION || s->config.num_labels != 1 || gold, TB_EFORMAT,
             "a regression student needs f32 labels in the batch");
    TB_TRY(tb_bert_distill_loss(s, &v->teacher, o->kind, o->temperature, gold, l, &g));
    TB_TRY(tb_bert_backward(s, &g));
error:
    return rc;
}

/* Writes OUT/gradients.safetensors and OUT/losses.json (OUT created if missing). */
static int write_outputs(const tb_emit_check_opts *o, const tb_bert_model *s, const tb_bert_distill_losses *l,
                         const tb_features_meta *tm, int B, int T)
{
    int rc = TB_OK;
    char path[4300];
    TB_CHECK(mkdir(o->out_dir, 0777) == 0 || errno == EEXIST, TB_EIO, "cannot create %s: %s", o->out_dir,
             strerror(errno));
    snprintf(path, sizeof path, "%s/gradients.safetensors", o->out_dir);
    TB_TRY(write_grads(path, s, l, o));
    snprintf(path, sizeof path, "%s/losses.json", o->out_dir);
    TB_TRY(write_losses_json(path, o, l, tm, &s->config, B, T));
error:
    return rc;
}

int tb_emit_check(const tb_emit_check_opts *o, tb_bert_distill_losses *out)
{
    int rc = TB_OK;
    tb_bert_model t = {0}, s = {0};
    tb_batch b = {0};
    tb_msg in, fm;
    tb_buf wire;
    tb_features_view v = {0};
    tb_features_meta tm;
    tb_features_request req, res;
    tb_bert_distill_losses l;
    tb_msg_init(&in);
    tb_msg_init(&fm);
    tb_buf_init(&wire);
    TB_TRY(check_opts_valid(o));
    TB_TRY(load_models(o, &t, &s));
    tb_features_meta_from_model(&tm, &t);
    tm.dtype = o->dtype;
    tm.dropout = o->teacher_dropout;
    TB_TRY(student_request(o, &t, &s, &tm, &req, &res));
    TB_TRY(tb_emit_read_input_at(o->input, "main", (uint64_t)o->index, &in));
    TB_TRY(tb_batch_from_msg(&b, &in));
    TB_TRY(teacher_features(o, &t, &res, &tm, &b, &wire, &fm));
    TB_TRY(tb_features_view_init(&v, &fm, &req));
    TB_TRY(student_gradients(o, &s, &b, &v, &l));
    TB_TRY(write_outputs(o, &s, &l, &tm, (int)b.input_ids.shape[0], (int)b.input_ids.shape[1]));
    if (out) *out = l;
error:
    tb_features_view_free(&v);
    tb_msg_free(&fm);
    tb_msg_free(&in);
    tb_buf_free(&wire);
    tb_batch_free(&b);
    tb_bert_free(&s);
    tb_bert_free(&t);
    return rc;
}
