/* stages/emit/check.h - tb-emit's check mode (check.c).
 *
 * tb_emit_check: for one batch of a message file, a teacher and a student, computes the
 * distillation loss of one stage and every student gradient without updating anything, and
 * writes OUT/losses.json and OUT/gradients.safetensors (F32, one tensor per student parameter
 * under its Hugging Face name) so other implementations can be compared with tinybert-c. The
 * teacher's features travel through the wire codec (encoded and decoded) as a student would
 * receive them.
 */
#ifndef TB_EMIT_CHECK_H
#define TB_EMIT_CHECK_H

#include "tb/base/tensor.h"
#include "tb/model/bert.h"

#include <stdint.h>

typedef struct tb_emit_check_opts {
    const char *teacher;          /* teacher checkpoint */
    const char *student;          /* student checkpoint (fit_size = teacher hidden for stage 1) */
    const char *input;            /* message file of token batches */
    int64_t index;                /* which message of the file (0-based) */
    const char *out_dir;          /* created if missing; losses.json + gradients.safetensors */
    tb_distill_kind kind;         /* TB_DISTILL_INTERMEDIATE or TB_DISTILL_PREDICTION */
    float temperature;            /* prediction loss temperature (1) */
    tb_dtype dtype;               /* features as they would travel: TB_F32 or TB_F16 */
    int teacher_dropout, student_dropout; /* 0: off (compare with references with dropout off) */
    uint64_t seed;
    int threads;
} tb_emit_check_opts;

void tb_emit_check_opts_default(tb_emit_check_opts *o);
/* The check mode described above; `out` (may be NULL) gets the losses. */
int tb_emit_check(const tb_emit_check_opts *o, tb_bert_distill_losses *out);

#endif
