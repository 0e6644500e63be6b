/* tinybert.h - classify or score texts with a tinybert-c checkpoint, from any C or C++ program.
 *
 * Installed as <tinybert.h> with the shared library libtinybert (`cmake --install`, pkg-config
 * name `tinybert`); inside the project it is "tb/api/tinybert.h". It depends on no other header.
 *
 *     tinybert *tb = tinybert_open("student/best", NULL);
 *     if (!tb) { fprintf(stderr, "%s\n", tinybert_last_error()); return 1; }
 *     int label;
 *     float probs[8];                       // tinybert_num_labels(tb) entries
 *     if (tinybert_classify(tb, "a gripping film", NULL, &label, probs) != 0) ...
 *     tinybert_close(tb);
 *
 * A checkpoint is a folder with config.json, model.safetensors and vocab.txt, as tb-finetune and
 * tb-distill write them (or a training folder whose `latest` link names one, or a Hugging Face
 * BertForSequenceClassification folder written by scripts/export-hf). It must have a
 * classification head ("num_labels" >= 2) or a regression head (1 label).
 *
 * Texts are NUL-terminated UTF-8. A text pair (text_b not NULL) is encoded [CLS] a [SEP] b [SEP]
 * as in training; texts longer than max_seq_length tokens are truncated the same way
 * (longest-first for pairs). The forward pass is the one of tb-eval (dropout off), so the
 * logits equal tb-eval's within float32 rounding.
 *
 * Errors: functions returning int give 0 on success and a positive code on failure; tinybert_open
 * gives NULL on failure. Then tinybert_last_error() says what was wrong and where (the path, the
 * text's index, the byte offset of invalid UTF-8, ...). The message is per thread and stays valid
 * until the calling thread's next tinybert_* call. The library never prints to stdout and never
 * exits; it may log a warning on stderr when it reads a checkpoint without tinybert-c's own
 * config keys.
 *
 * Threads: a handle holds its working memory, so one handle must not be used by two threads at
 * the same time; distinct handles may be used concurrently (each call runs on the calling thread
 * plus `threads` OpenMP/BLIS workers). BLIS keeps one process-wide thread count, so handles used
 * concurrently should be opened with the same `threads`. For processes that share the cores with
 * others, set OMP_WAIT_POLICY=PASSIVE in the environment before the program starts.
 */
#ifndef TINYBERT_H
#define TINYBERT_H

#ifdef __cplusplus
extern "C" {
#endif

#define TINYBERT_VERSION "0.1.0"

typedef struct tinybert tinybert;

typedef struct tinybert_options {
    int threads;         /* worker threads; 0: TB_THREADS from the environment, else every core */
    int max_seq_length;  /* tokens per text or pair, [CLS] and [SEP] included; 0: 128 (at most the
                            model's max_position_embeddings) */
    int batch_size;      /* texts per forward pass in tinybert_logits; 0: 32 */
    int cased;           /* 1: keep case and accents (cased vocabularies); 0: lower-case */
} tinybert_options;

/* The defaults: every field 0. */
void tinybert_options_default(tinybert_options *opts);

/* Opens the checkpoint folder `path`. `opts` may be NULL (the defaults). NULL on failure. */
tinybert *tinybert_open(const char *path, const tinybert_options *opts);

/* Releases everything the handle holds; NULL is allowed. */
void tinybert_close(tinybert *tb);

/* Number of outputs: 1 for a regression (score) model, else the number of classes. */
int tinybert_num_labels(const tinybert *tb);

/* Name of class `label` from config.json's "id2label" ("LABEL_<n>" when the folder has none);
 * NULL when label is out of range. Valid until tinybert_close. */
const char *tinybert_label_name(const tinybert *tb, int label);

/* Logits of n texts (text_b NULL, or text_b[i] NULL: single texts) into logits[n * num_labels],
 * row i for text i. Texts are sorted by length internally and run batch_size at a time. */
int tinybert_logits(tinybert *tb, int n, const char *const *text_a, const char *const *text_b, float *logits);

/* The predicted class of one text (or pair) into *label and, when probs is not NULL, the softmax
 * of the logits into probs[num_labels]. Fails on a regression model. */
int tinybert_classify(tinybert *tb, const char *text_a, const char *text_b, int *label, float *probs);

/* The score of one text (or pair) of a regression model (1 output) into *score. */
int tinybert_score(tinybert *tb, const char *text_a, const char *text_b, float *score);

/* What went wrong in the calling thread's last failed call ("" when nothing did). */
const char *tinybert_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
