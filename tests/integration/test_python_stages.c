/* Integration tests: the Python stages in pipeline files, run by tb-pipeline, against the C stages.
 *
 * pipelines/torch-teacher.pipe: python/stages/tb-torch-emit (a PyTorch teacher from the same
 * checkpoint) feeds tb-distill; its feature file must equal tb-emit's within 1e-5 relative and the
 * student's first 20 losses must equal those of a student fed by tb-emit (dropout off everywhere). */
#include "test_distill.h"

#define PIPELINE TB_BIN_DIR "/tb-pipeline"
#define COMPARE TB_SOURCE_DIR "/python/tests/compare_features.py"

static int run(char *const argv[], const char *err_path, int timeout_ms)
{
    pid_t p = td_spawn(argv, err_path);
    cr_assert_gt(p, 0, "cannot start %s", argv[0]);
    return td_wait(p, timeout_ms);
}

static void show(const char *path)
{
    char *text = td_slurp(path, NULL);
    fprintf(stderr, "---- %s\n%s\n", path, text ? text : "(none)");
    free(text);
}

Test(python_stages, torch_teacher_pipeline_matches_tb_emit, .timeout = 600)
{
    char dir[256], teacher[512], batches[512], scfg[512], out[512], err[512], ep[256];
    char vt[600], vb[600], vs[600], vo[600], f_c[600], m_c[600], s_c[600];
    tb_proc_tmpdir(dir, sizeof dir);
    /* teacher: 4 layers, hidden 32, 4 heads, relu head with 2 labels; student: 2 layers, hidden 16,
     * fit_size 32 (stage 1 maps teacher layers 1, 3 and hidden states 0, 2, 4) */
    tb_bert_config tc = td_config(100, 32, 4, 4, 64, TB_HEAD_TINYBERT, 2, 0);
    tb_bert_config sc = td_config(100, 16, 2, 4, 32, TB_HEAD_NONE, 0, 32);
    snprintf(out, sizeof out, "%s/teacher", dir);
    td_model(out, &tc, 7, teacher, sizeof teacher);
    snprintf(batches, sizeof batches, "%s/batches.tbm", dir);
    td_batches(batches, 20, 4, 16, 100, 2, 3);
    snprintf(scfg, sizeof scfg, "%s/student.json", dir);
    cr_assert_eq(tb_config_save(scfg, &sc), TB_OK, "%s", tb_err_msg());

    /* the Python teacher, in the pipeline */
    snprintf(vt, sizeof vt, "TEACHER=%s", teacher);
    snprintf(vb, sizeof vb, "BATCHES=%s", batches);
    snprintf(vs, sizeof vs, "STUDENT=%s", scfg);
    snprintf(vo, sizeof vo, "OUT=%s/py", dir);
    snprintf(out, sizeof out, "%s/py", dir);
    cr_assert_eq(mkdir(out, 0700), 0);
    char *check[] = {PIPELINE, "--check", TB_SOURCE_DIR "/pipelines/torch-teacher.pipe", vt, vb, vs, vo, NULL};
    snprintf(err, sizeof err, "%s/check.err", dir);
    int code = run(check, err, 60000);
    if (code) show(err);
    cr_assert_eq(code, 0, "tb-pipeline --check torch-teacher.pipe failed");
    char *pipe[] = {PIPELINE, TB_SOURCE_DIR "/pipelines/torch-teacher.pipe", vt, vb, vs, vo, NULL};
    snprintf(err, sizeof err, "%s/pipeline.err", dir);
    code = run(pipe, err, 400000);
    if (code) show(err);
    cr_assert_eq(code, 0, "tb-pipeline torch-teacher.pipe failed");

    /* the same with tb-emit */
    tb_proc_ipc_endpoint(ep, sizeof ep);
    snprintf(out, sizeof out, "%s/c", dir);
    cr_assert_eq(mkdir(out, 0700), 0);
    snprintf(s_c, sizeof s_c, "%s/c/student", dir);
    snprintf(m_c, sizeof m_c, "%s/c/student.jsonl", dir);
    char *emit[] = {TD_EMIT, "--teacher", teacher, "--input", batches, "--output", ep, "--students", "1",
                    "--progress", "none", "--log-level", "warn", "--threads", "1", NULL};
    char *student[] = {TD_DISTILL, "--input", ep, "--mode", "task-stage1", "--config", scfg, "--output", s_c,
                       "--total-steps", "20", "--no-dropout", "--metrics", m_c, "--plot", "", "--consumer-id",
                       "student", "--progress", "none", "--log-level", "warn", "--threads", "1", NULL};
    snprintf(err, sizeof err, "%s/c/emit.err", dir);
    pid_t e = td_spawn(emit, err);
    char serr[600];
    snprintf(serr, sizeof serr, "%s/c/student.err", dir);
    code = run(student, serr, 300000);
    if (code) show(serr);
    cr_assert_eq(code, 0, "tb-distill fed by tb-emit failed");
    cr_assert_eq(td_wait(e, 60000), 0, "tb-emit failed");
    snprintf(f_c, sizeof f_c, "%s/c/features.tbm", dir);
    char *emitf[] = {TD_EMIT, "--teacher", teacher, "--input", batches, "--output", f_c, "--student-layers", "2",
                     "--logits", "--progress", "none", "--log-level", "warn", "--threads", "1", NULL};
    cr_assert_eq(run(emitf, err, 120000), 0, "tb-emit to a file failed");

    char f_py[600], m_py[600];
    snprintf(f_py, sizeof f_py, "%s/py/torch-features.tbm", dir);
    snprintf(m_py, sizeof m_py, "%s/py/student.jsonl", dir);
    char *cmpf[] = {TB_PYTHON, COMPARE, "features", f_py, f_c, "1e-5", NULL};
    cr_assert_eq(run(cmpf, NULL, 120000), 0, "tb-torch-emit's features differ from tb-emit's");
    char *cmpl[] = {TB_PYTHON, COMPARE, "losses", m_py, m_c, "20", "1e-5", NULL};
    cr_assert_eq(run(cmpl, NULL, 60000), 0, "the student's losses differ between the two teachers");
    td_rmtree(dir);
}

/* pipelines/py-tokenize.pipe: python/stages/tb-py-tokenize (the reference tokenizer) feeds
 * tb-finetune; its batches must equal tb-tokenize's (--no-shuffle) exactly, and tb-finetune's losses
 * must equal those of the same run fed by tb-tokenize's file. */
Test(python_stages, py_tokenizer_pipeline_matches_tb_tokenize, .timeout = 600)
{
    char dir[256], cfg[512], out[512], err[512], vm[600], vo[600], tokens[600], m_c[600], s_c[600];
    tb_proc_tmpdir(dir, sizeof dir);
    tb_bert_config c = td_config(30522, 16, 2, 2, 32, TB_HEAD_TINYBERT, 2, 0);
    snprintf(cfg, sizeof cfg, "%s/model.json", dir);
    cr_assert_eq(tb_config_save(cfg, &c), TB_OK, "%s", tb_err_msg());
    snprintf(vm, sizeof vm, "MODEL=%s", cfg);
    snprintf(vo, sizeof vo, "OUT=%s/py", dir);
    snprintf(out, sizeof out, "%s/py", dir);
    cr_assert_eq(mkdir(out, 0700), 0);
    char *check[] = {PIPELINE, "--check", TB_SOURCE_DIR "/pipelines/py-tokenize.pipe", vm, vo, NULL};
    snprintf(err, sizeof err, "%s/check.err", dir);
    int code = run(check, err, 60000);
    if (code) show(err);
    cr_assert_eq(code, 0, "tb-pipeline --check py-tokenize.pipe failed");
    char *pipe[] = {PIPELINE, TB_SOURCE_DIR "/pipelines/py-tokenize.pipe", vm, vo, NULL};
    snprintf(err, sizeof err, "%s/pipeline.err", dir);
    code = run(pipe, err, 400000);
    if (code) show(err);
    cr_assert_eq(code, 0, "tb-pipeline py-tokenize.pipe failed");

    snprintf(tokens, sizeof tokens, "%s/c-tokens.tbm", dir);
    char *tok[] = {TB_BIN_DIR "/tb-tokenize", "--input", TB_SOURCE_DIR "/data/sst2/dev.tsv", "--format", "sst-2",
                   "--vocab", TB_SOURCE_DIR "/data/vocab/bert-base-uncased-vocab.txt", "--output", tokens,
                   "--batch-size", "8", "--max-seq-length", "32", "--no-shuffle", "--progress", "none",
                   "--log-level", "warn", NULL};
    cr_assert_eq(run(tok, NULL, 120000), 0, "tb-tokenize failed");
    snprintf(s_c, sizeof s_c, "%s/c-model", dir);
    snprintf(m_c, sizeof m_c, "%s/c-finetune.jsonl", dir);
    char *ft[] = {TB_BIN_DIR "/tb-finetune", "--input", tokens, "--config", cfg, "--output", s_c, "--num-labels",
                  "2", "--no-dropout", "--epochs", "1", "--total-steps", "109", "--metrics", m_c, "--plot", "",
                  "--progress", "none", "--threads", "1", "--log-level", "warn", NULL};
    cr_assert_eq(run(ft, NULL, 300000), 0, "tb-finetune on tb-tokenize's batches failed");

    char py_tokens[600], m_py[600];
    snprintf(py_tokens, sizeof py_tokens, "%s/py/py-tokens.tbm", dir);
    snprintf(m_py, sizeof m_py, "%s/py/finetune.jsonl", dir);
    char *cmpf[] = {TB_PYTHON, COMPARE, "features", py_tokens, tokens, "0", NULL};
    cr_assert_eq(run(cmpf, NULL, 120000), 0, "tb-py-tokenize's batches differ from tb-tokenize's");
    char *cmpl[] = {TB_PYTHON, COMPARE, "losses", m_py, m_c, "109", "1e-6", NULL};
    cr_assert_eq(run(cmpl, NULL, 60000), 0, "tb-finetune's losses differ between the two tokenizers");
    td_rmtree(dir);
}
