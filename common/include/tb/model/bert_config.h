/* tb/model/bert_config.h - the hyper-parameters of a BERT model, as in a Hugging Face config.json. */
#ifndef TB_BERT_CONFIG_H
#define TB_BERT_CONFIG_H

typedef enum tb_head_kind {
    TB_HEAD_NONE = 0,       /* encoder only */
    TB_HEAD_TINYBERT,       /* logits = W_c relu(tanh(W_p h_cls + b_p)) + b_c, no dropout (reference) */
    TB_HEAD_HF,             /* logits = W_c dropout(tanh(W_p h_cls + b_p)) + b_c (BertForSequenceClassification) */
} tb_head_kind;

typedef struct tb_bert_config {
    int vocab_size;               /* 30522 for bert-base-uncased */
    int hidden_size;
    int num_hidden_layers;
    int num_attention_heads;
    int intermediate_size;
    int max_position_embeddings;  /* 512 */
    int type_vocab_size;          /* 2 */
    float layer_norm_eps;         /* 1e-12 */
    float hidden_dropout_prob;    /* 0.1 */
    float attention_probs_dropout_prob; /* 0.1 */
    float initializer_range;      /* 0.02 */
    int pad_token_id;             /* 0: its word-embedding row gets no lookup gradient */
    tb_head_kind head;            /* classification head, recorded in config.json */
    int num_labels;               /* with a head: 1 = regression, >= 2 = classification */
    float classifier_dropout;     /* TB_HEAD_HF only */
    int mlm_head;                 /* 1: has the MLM head (tied decoder) */
    int fit_size;                 /* > 0: student with fit_dense [fit_size, hidden_size] */
    int pooler;                   /* 1: bert.pooler.* without a classification head (a head always has
                                     one), so Hugging Face's BertModel loads it strictly; not run */
} tb_bert_config;

#endif
