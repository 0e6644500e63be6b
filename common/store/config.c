/* config.c - config.json <-> tb_bert_config (tb/store/config.h). */
#include "tb/store/config.h"

#include "tb/base/error.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest config.json accepted (real ones are ~1 KB; id2label of a big label set stays far below). */
#define CONFIG_MAX_BYTES (16u << 20)

const char *tb_head_kind_name(tb_head_kind h)
{
    switch (h) {
    case TB_HEAD_NONE: return "none";
    case TB_HEAD_TINYBERT: return "relu";
    case TB_HEAD_HF: return "hf";
    }
    return "?";
}

int tb_head_kind_parse(const char *s, tb_head_kind *out)
{
    if (s && strcmp(s, "none") == 0) *out = TB_HEAD_NONE;
    else if (s && strcmp(s, "relu") == 0) *out = TB_HEAD_TINYBERT;
    else if (s && strcmp(s, "hf") == 0) *out = TB_HEAD_HF;
    else
        return TB_ERR(TB_EINVAL, "unknown head kind '%s': use none, relu (TinyBERT reference) or hf "
                                 "(BertForSequenceClassification)", s ? s : "(null)");
    return TB_OK;
}

int tb_config_validate(const tb_bert_config *c, const char *what)
{
    int rc = TB_OK;
#define POS(field) TB_CHECK(c->field > 0, TB_EFORMAT, "%s: \"" #field "\" must be > 0, got %d", what, c->field)
#define PROB(field)                                                                                            \
    TB_CHECK(c->field >= 0.0f && c->field < 1.0f, TB_EFORMAT, "%s: \"" #field "\" must be in [0, 1), got %g", what, \
             (double)c->field)
    POS(vocab_size);
    POS(hidden_size);
    POS(num_hidden_layers);
    POS(num_attention_heads);
    POS(intermediate_size);
    POS(max_position_embeddings);
    POS(type_vocab_size);
    TB_CHECK(c->hidden_size % c->num_attention_heads == 0, TB_EFORMAT,
             "%s: \"hidden_size\" %d is not a multiple of \"num_attention_heads\" %d", what, c->hidden_size,
             c->num_attention_heads);
    TB_CHECK(c->layer_norm_eps > 0.0f && isfinite(c->layer_norm_eps), TB_EFORMAT,
             "%s: \"layer_norm_eps\" must be > 0, got %g", what, (double)c->layer_norm_eps);
    PROB(hidden_dropout_prob);
    PROB(attention_probs_dropout_prob);
    PROB(classifier_dropout);
    TB_CHECK(c->initializer_range >= 0.0f && isfinite(c->initializer_range), TB_EFORMAT,
             "%s: \"initializer_range\" must be >= 0, got %g", what, (double)c->initializer_range);
    TB_CHECK(c->pad_token_id >= 0 && c->pad_token_id < c->vocab_size, TB_EFORMAT,
             "%s: \"pad_token_id\" %d is outside the vocabulary (0..%d)", what, c->pad_token_id, c->vocab_size - 1);
    TB_CHECK(c->head >= TB_HEAD_NONE && c->head <= TB_HEAD_HF, TB_EFORMAT, "%s: invalid head kind %d", what,
             (int)c->head);
    TB_CHECK(c->head == TB_HEAD_NONE || c->num_labels >= 1, TB_EFORMAT,
             "%s: a classification head needs \"num_labels\" >= 1 (1 = regression), got %d", what, c->num_labels);
    TB_CHECK(c->fit_size >= 0, TB_EFORMAT, "%s: \"fit_size\" must be >= 0, got %d", what, c->fit_size);
    TB_CHECK(c->pooler == 0 || c->pooler == 1, TB_EFORMAT, "%s: pooler flag must be 0 or 1, got %d", what, c->pooler);
#undef POS
#undef PROB
error:
    return rc;
}

/* ---- parsing ------------------------------------------------------------------------------ */

static int get_int(const cJSON *root, const char *what, const char *key, int required, int def, int *out)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) {
        if (required) return TB_ERR(TB_ENOTFOUND, "%s: required key \"%s\" is missing", what, key);
        *out = def;
        return TB_OK;
    }
    double d = cJSON_IsNumber(j) ? j->valuedouble : NAN;
    if (!(d >= -2147483648.0 && d <= 2147483647.0) || floor(d) != d)
        return TB_ERR(TB_EFORMAT, "%s: key \"%s\" must be an integer", what, key);
    *out = (int)d;
    return TB_OK;
}

static int get_float(const cJSON *root, const char *what, const char *key, float def, float *out)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) {
        *out = def;
        return TB_OK;
    }
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble))
        return TB_ERR(TB_EFORMAT, "%s: key \"%s\" must be a number", what, key);
    *out = (float)j->valuedouble;
    return TB_OK;
}

/* num_labels from "num_labels" and/or "id2label" (keys "0".."n-1"); 0 when neither is present. */
static int get_num_labels(const cJSON *root, const char *what, int *out)
{
    int rc = TB_OK, n = 0, from_map = -1;
    TB_TRY(get_int(root, what, "num_labels", 0, 0, &n));
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "id2label");
    if (map && !cJSON_IsNull(map)) {
        TB_CHECK(cJSON_IsObject(map), TB_EFORMAT, "%s: \"id2label\" must be an object", what);
        from_map = cJSON_GetArraySize(map);
        for (int i = 0; i < from_map; i++) {
            char key[16];
            snprintf(key, sizeof key, "%d", i);
            TB_CHECK(cJSON_GetObjectItemCaseSensitive(map, key), TB_EFORMAT,
                     "%s: \"id2label\" has %d entries but no key \"%s\" (keys must be 0..%d)", what, from_map, key,
                     from_map - 1);
        }
        TB_CHECK(n == 0 || n == from_map, TB_EFORMAT, "%s: \"num_labels\" %d disagrees with \"id2label\" (%d entries)",
                 what, n, from_map);
        n = from_map;
    }
    *out = n;
error:
    return rc;
}

static int architectures_name(const cJSON *root, const char *a, const char *b)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "architectures"), *j;
    if (!cJSON_IsArray(arr)) return 0;
    cJSON_ArrayForEach(j, arr) if (cJSON_IsString(j) && (strcmp(j->valuestring, a) == 0 || strcmp(j->valuestring, b) == 0)) return 1;
    return 0;
}

int tb_config_parse(const char *json, const char *what, tb_bert_config *out)
{
    int rc = TB_OK;
    tb_bert_config c;
    memset(&c, 0, sizeof c);
    cJSON *root = cJSON_Parse(json);
    TB_CHECK(root, TB_EFORMAT, "%s: not valid JSON", what);
    TB_CHECK(cJSON_IsObject(root), TB_EFORMAT, "%s: top level must be a JSON object", what);
    TB_TRY(get_int(root, what, "vocab_size", 1, 0, &c.vocab_size));
    TB_TRY(get_int(root, what, "hidden_size", 1, 0, &c.hidden_size));
    TB_TRY(get_int(root, what, "num_hidden_layers", 1, 0, &c.num_hidden_layers));
    TB_TRY(get_int(root, what, "num_attention_heads", 1, 0, &c.num_attention_heads));
    TB_TRY(get_int(root, what, "intermediate_size", 1, 0, &c.intermediate_size));
    TB_TRY(get_int(root, what, "max_position_embeddings", 0, 512, &c.max_position_embeddings));
    TB_TRY(get_int(root, what, "type_vocab_size", 0, 2, &c.type_vocab_size));
    TB_TRY(get_float(root, what, "layer_norm_eps", 1e-12f, &c.layer_norm_eps));
    TB_TRY(get_float(root, what, "hidden_dropout_prob", 0.1f, &c.hidden_dropout_prob));
    TB_TRY(get_float(root, what, "attention_probs_dropout_prob", 0.1f, &c.attention_probs_dropout_prob));
    TB_TRY(get_float(root, what, "initializer_range", 0.02f, &c.initializer_range));
    TB_TRY(get_float(root, what, "classifier_dropout", c.hidden_dropout_prob, &c.classifier_dropout));
    TB_TRY(get_int(root, what, "pad_token_id", 0, 0, &c.pad_token_id));
    TB_TRY(get_int(root, what, "fit_size", 0, 0, &c.fit_size));

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    TB_CHECK(!act || (cJSON_IsString(act) && strcmp(act->valuestring, "gelu") == 0), TB_EUNSUPPORTED,
             "%s: key \"hidden_act\" must be \"gelu\" (erf form), got %s", what,
             cJSON_IsString(act) ? act->valuestring : "a non-string");

    const cJSON *head = cJSON_GetObjectItemCaseSensitive(root, "tinybert_head");
    if (head) {
        TB_CHECK(cJSON_IsString(head), TB_EFORMAT, "%s: key \"tinybert_head\" must be \"none\", \"relu\" or \"hf\"", what);
        rc = tb_head_kind_parse(head->valuestring, &c.head);
        if (rc) {
            tb_err_wrap(rc, "%s: key \"tinybert_head\"", what);
            goto error;
        }
    } else {
        c.head = TB_HEAD_NONE;
    }
    TB_TRY(get_num_labels(root, what, &c.num_labels));
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "problem_type");
    if (pt && !cJSON_IsNull(pt)) {
        TB_CHECK(cJSON_IsString(pt), TB_EFORMAT, "%s: key \"problem_type\" must be a string", what);
        if (strcmp(pt->valuestring, "regression") == 0) {
            TB_CHECK(c.num_labels == 0 || c.num_labels == 1, TB_EFORMAT,
                     "%s: \"problem_type\" is regression but there are %d labels (needs 1)", what, c.num_labels);
            c.num_labels = 1;
        } else {
            TB_CHECK(strcmp(pt->valuestring, "single_label_classification") == 0, TB_EUNSUPPORTED,
                     "%s: key \"problem_type\" '%s' is not supported (regression or single_label_classification)",
                     what, pt->valuestring);
        }
    }
    TB_CHECK(c.head == TB_HEAD_NONE || c.num_labels >= 1, TB_ENOTFOUND,
             "%s: head \"%s\" needs \"num_labels\" or \"id2label\"", what, tb_head_kind_name(c.head));

    const cJSON *mlm = cJSON_GetObjectItemCaseSensitive(root, "tinybert_mlm_head");
    if (mlm) {
        TB_CHECK(cJSON_IsBool(mlm), TB_EFORMAT, "%s: key \"tinybert_mlm_head\" must be true or false", what);
        c.mlm_head = cJSON_IsTrue(mlm);
    } else {
        c.mlm_head = architectures_name(root, "BertForMaskedLM", "BertForPreTraining");
    }
    const cJSON *pool = cJSON_GetObjectItemCaseSensitive(root, "tinybert_pooler");
    if (pool) {
        TB_CHECK(cJSON_IsBool(pool), TB_EFORMAT, "%s: key \"tinybert_pooler\" must be true or false", what);
        c.pooler = cJSON_IsTrue(pool);
    }
    TB_TRY(tb_config_validate(&c, what));
    *out = c;
error:
    cJSON_Delete(root);
    return rc;
}

static int read_text_file(const char *path, size_t max, char **out)
{
    int rc = TB_OK;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    TB_CHECK(f, TB_EIO, "cannot open %s: %s", path, strerror(errno));
    TB_CHECK(fseek(f, 0, SEEK_END) == 0, TB_EIO, "cannot seek %s: %s", path, strerror(errno));
    long n = ftell(f);
    TB_CHECK(n >= 0 && (size_t)n <= max, TB_EFORMAT, "%s: size %ld is outside 0..%zu bytes", path, n, max);
    rewind(f);
    buf = malloc((size_t)n + 1);
    TB_CHECK(buf, TB_ENOMEM, "cannot allocate %ld bytes for %s", n, path);
    TB_CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n, TB_EIO, "cannot read %s", path);
    buf[n] = 0;
    TB_CHECK(strlen(buf) == (size_t)n, TB_EFORMAT, "%s: contains a NUL byte", path);
    *out = buf;
    buf = NULL;
error:
    free(buf);
    if (f) fclose(f);
    return rc;
}

int tb_config_load(const char *path, tb_bert_config *out)
{
    char *text = NULL;
    int rc = read_text_file(path, CONFIG_MAX_BYTES, &text);
    if (!rc) rc = tb_config_parse(text, path, out);
    free(text);
    return rc;
}

/* ---- writing ------------------------------------------------------------------------------ */

/* The shortest decimal that reads back as the same float, as a double (so 0.1f prints as 0.1). */
static double float_decimal(float f)
{
    char buf[32];
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

static int add_number(cJSON *o, const char *key, double v) { return cJSON_AddNumberToObject(o, key, v) != NULL; }

int tb_config_format(const tb_bert_config *c, char **out)
{
    int rc = TB_OK, ok = 1;
    cJSON *o = NULL;
    TB_TRY(tb_config_validate(c, "config"));
    o = cJSON_CreateObject();
    TB_CHECK(o, TB_ENOMEM, "out of memory formatting config.json");
    const char *arch = c->head != TB_HEAD_NONE ? "BertForSequenceClassification"
                       : c->mlm_head           ? "BertForMaskedLM"
                                               : "BertModel";
    cJSON *archs = cJSON_AddArrayToObject(o, "architectures");
    ok &= archs && cJSON_AddItemToArray(archs, cJSON_CreateString(arch));
    ok &= cJSON_AddStringToObject(o, "model_type", "bert") != NULL;
    ok &= add_number(o, "vocab_size", c->vocab_size);
    ok &= add_number(o, "hidden_size", c->hidden_size);
    ok &= add_number(o, "num_hidden_layers", c->num_hidden_layers);
    ok &= add_number(o, "num_attention_heads", c->num_attention_heads);
    ok &= add_number(o, "intermediate_size", c->intermediate_size);
    ok &= cJSON_AddStringToObject(o, "hidden_act", "gelu") != NULL;
    ok &= add_number(o, "max_position_embeddings", c->max_position_embeddings);
    ok &= add_number(o, "type_vocab_size", c->type_vocab_size);
    ok &= add_number(o, "layer_norm_eps", float_decimal(c->layer_norm_eps));
    ok &= add_number(o, "hidden_dropout_prob", float_decimal(c->hidden_dropout_prob));
    ok &= add_number(o, "attention_probs_dropout_prob", float_decimal(c->attention_probs_dropout_prob));
    ok &= add_number(o, "classifier_dropout", float_decimal(c->classifier_dropout));
    ok &= add_number(o, "initializer_range", float_decimal(c->initializer_range));
    ok &= add_number(o, "pad_token_id", c->pad_token_id);
    ok &= cJSON_AddStringToObject(o, "position_embedding_type", "absolute") != NULL;
    ok &= cJSON_AddStringToObject(o, "tinybert_head", tb_head_kind_name(c->head)) != NULL;
    ok &= cJSON_AddBoolToObject(o, "tinybert_mlm_head", c->mlm_head != 0) != NULL;
    ok &= add_number(o, "fit_size", c->fit_size);
    ok &= cJSON_AddBoolToObject(o, "tinybert_pooler", c->pooler != 0) != NULL;
    if (c->head != TB_HEAD_NONE) {
        ok &= add_number(o, "num_labels", c->num_labels);
        ok &= cJSON_AddStringToObject(o, "problem_type",
                                      c->num_labels == 1 ? "regression" : "single_label_classification") != NULL;
        cJSON *id2label = cJSON_AddObjectToObject(o, "id2label");
        cJSON *label2id = cJSON_AddObjectToObject(o, "label2id");
        ok &= id2label && label2id;
        for (int i = 0; ok && i < c->num_labels; i++) {
            char k[16], v[32];
            snprintf(k, sizeof k, "%d", i);
            snprintf(v, sizeof v, "LABEL_%d", i);
            ok &= cJSON_AddStringToObject(id2label, k, v) != NULL;
            ok &= add_number(label2id, v, i);
        }
    }
    TB_CHECK(ok, TB_ENOMEM, "out of memory formatting config.json");
    *out = cJSON_Print(o);
    TB_CHECK(*out, TB_ENOMEM, "out of memory formatting config.json");
error:
    cJSON_Delete(o);
    return rc;
}

int tb_config_save(const char *path, const tb_bert_config *c)
{
    int rc = TB_OK, fd = -1;
    char *text = NULL;
    TB_TRY(tb_config_format(c, &text));
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    TB_CHECK(fd >= 0, TB_EIO, "cannot create %s: %s", path, strerror(errno));
    size_t n = strlen(text);
    text[n] = '\n'; /* replace the terminator: the file ends with a newline */
    TB_CHECK(write(fd, text, n + 1) == (ssize_t)(n + 1), TB_EIO, "cannot write %s: %s", path, strerror(errno));
    TB_CHECK(fsync(fd) == 0, TB_EIO, "cannot fsync %s: %s", path, strerror(errno));
    TB_CHECK(close(fd) == 0, TB_EIO, "cannot close %s: %s", path, strerror(errno));
    fd = -1;
error:
    if (fd >= 0) close(fd);
    free(text);
    return rc;
}
