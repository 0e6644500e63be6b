"""The tinybert-c stream protocol: version, message kinds and the fields of every message.

docs/protocol.md is the reference; the tables below are the same tables in code, and
tests/integration/test_python_kit.c checks that both list the same fields. Change them together
with the C side (common/wire/stream*.c, TB_PROTOCOL_VERSION in tb/base/protocol.h).
"""

PROTOCOL_VERSION = 1
CREDIT_MAX = 1 << 20  # a credit field above this is malformed
ID_MAX = 63  # bytes of a stream id or consumer id

KINDS = ("hello", "credit", "ack", "batch", "end", "heartbeat", "error")

# (field, type, required, meaning) per message kind; "msg" and "stream" are in every message.
# type: "str", "uint", "bool" (as uint 0/1), "any".
COMMON_FIELDS = (
    ("msg", "str", True, "the message kind"),
    ("stream", "str", True, "the stream id (default \"main\")"),
)
FIELDS = {
    "hello": (
        ("consumer", "str", True, "the consumer id; equal to the connection's ZMQ_ROUTING_ID"),
        ("resume", "uint", True, "first sequence number wanted"),
        ("credit", "uint", True, "batches the producer may send ahead"),
        ("protocol", "uint", True, "the protocol version the consumer speaks"),
    ),
    "credit": (
        ("consumer", "str", False, "the consumer id"),
        ("credit", "uint", True, "more batches the producer may send"),
    ),
    "ack": (
        ("consumer", "str", False, "the consumer id"),
        ("seq", "uint", True, "every batch <= seq is safe in the consumer's checkpoint"),
    ),
    "batch": (
        ("seq", "uint", True, "sequence number, 0, 1, 2, ... per stream"),
    ),
    "end": (
        ("seq", "uint", True, "equal to count"),
        ("count", "uint", True, "the stream had count batches, 0 .. count-1"),
    ),
    "heartbeat": (
        ("consumer", "str", False, "consumer -> producer: the consumer id"),
        ("resume", "uint", False, "consumer -> producer: the next sequence number expected"),
        ("credit", "uint", False, "consumer -> producer: room for batches from resume on"),
        ("seq", "uint", False, "consumer -> producer: highest acknowledged, once any"),
        ("count", "uint", False, "consumer -> producer: the END count, once END arrived"),
        ("protocol", "uint", False, "producer -> consumer, in the first heartbeat after a hello"),
        ("total", "uint", False, "producer -> consumer, with protocol: the batches the stream will hold, "
         "when the producer knows"),
    ),
    "error": (
        ("consumer", "str", False, "consumer -> producer: the consumer id"),
        ("error", "str", True, "what was wrong"),
        ("fatal", "uint", False, "1: the sender gives up on this stream"),
    ),
}

# Application fields of a token batch (tb_batch_to_msg, common/text/dataset.c; docs/stages.md).
# (field, dtype, shape, required, meaning)
BATCH_FIELDS = (
    ("input_ids", "<i4", "B,T", True, "token ids, [CLS] ... [SEP] ... then [PAD] = 0"),
    ("token_type_ids", "<i4", "B,T", True, "segment ids: 0 for the first text, 1 for the second"),
    ("attention_mask", "<i4", "B,T", True, "1 for real tokens, 0 for padding"),
    ("labels", "<i4|<f4", "B", True, "class ids in label_order (<i4), f32 targets for regression, -1 for a corpus"),
    ("example_ids", "<i8", "B", True, "the examples' indices in the data set"),
    ("epoch", "int", "", True, "epoch of the batch (0-based)"),
    ("index", "int", "", True, "index of the batch within its epoch"),
    ("vocab_hash", "str", "", False, "hash of the vocabulary the ids refer to (tb-vocab --hash)"),
    ("label_order", "str", "", False, "the task's labels in index order, comma separated"),
)

# Fields a feature message adds to the token batch (tb_features_add; docs/emit.md).
FEATURE_FIELDS = (
    ("teacher.hidden.<j>", "<f4|<f2", "B,T,C", False, "teacher hidden state j, 0 = embedding output"),
    ("teacher.attn.<l>", "<f4|<f2", "B,NH,T,T", False, "pre-softmax scores of teacher layer l"),
    ("teacher.logits", "<f4|<f2", "B,NL", False, "teacher output logits"),
    ("features.dtype", "str", "", True, "f32 or f16: the dtype of every feature tensor"),
    ("teacher.layers", "int", "", True, "teacher depth N"),
    ("teacher.heads", "int", "", True, "teacher attention heads"),
    ("teacher.hidden_size", "int", "", True, "teacher hidden size C"),
    ("teacher.num_labels", "int", "", True, "teacher output labels NL (0 without a head)"),
    ("teacher.config_hash", "str", "", True, "FNV-1a 64 of the teacher's config (docs/emit.md)"),
    ("teacher.dropout", "bool", "", True, "the teacher ran with dropout"),
    ("label_order_hash", "str", "", False, "fnv1a64 of the batch's label_order (absent with it)"),
)

# Application fields of a text message: task rows between stages (tb-augment --output ENDPOINT,
# tb-tokenize --input ENDPOINT; docs/protocol.md "Text rows"). (field, type, required, meaning)
TEXT_FIELDS = (
    ("format", "str", True, "the task format of the rows: simple, corpus or a GLUE task name (sst-2, mrpc, ...)"),
    ("header", "str", False, "the format's header line without its newline, in every message; absent without one"),
    ("rows", "str", True, "the message's rows, each ended by \"\\n\", no \"\\r\"; \"\" for none"),
)


def text_message(fmt, rows, header=None):
    """The application fields of one text message: `rows` is a list of lines (without newlines)."""
    for r in rows:
        if "\n" in r or "\r" in r:
            raise ValueError("a row holds a line break: %r" % r)
    m = {"format": fmt, "rows": "".join(r + "\n" for r in rows)}
    if header is not None:
        m["header"] = header
    return m


# Application fields of a student's hello (tb_features_request_to_hello; docs/emit.md).
REQUEST_FIELDS = (
    ("features.student_layers", "int", "", False, "M > 0: map M student layers onto the teacher"),
    ("features.hidden", "str", "", False, "explicit hidden state indices, \"0,3,6\""),
    ("features.attn", "str", "", False, "explicit attention layer indices"),
    ("features.logits", "bool", "", False, "needs teacher.logits"),
    ("features.student_heads", "int", "", False, "checked against the teacher's heads"),
    ("expect.config_hash", "str", "", False, "the teacher config hash the student expects"),
    ("expect.vocab_hash", "str", "", False, "the vocabulary hash the student expects"),
    ("expect.label_order_hash", "str", "", False, "the label order hash the student expects"),
    ("expect.hidden_size", "int", "", False, "the teacher hidden size the student expects"),
)


def fnv1a64(data: bytes) -> str:
    """The hashes of docs/emit.md: "fnv1a64:" + FNV-1a 64 of `data` as 16 lowercase hex digits."""
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "fnv1a64:%016x" % h


def config_hash(c: dict) -> str:
    """teacher.config_hash of a BERT config (config.json keys; tb_features_config_hash).

    "tinybert_head" is "none" (0, the default), "relu" (1) or "hf" (2); num_labels counts only
    with a head. The text hashed is exactly tb_features_config_hash's (common/train/features.c).
    """
    head = {"none": 0, "relu": 1, "hf": 2}[c.get("tinybert_head", "none")]
    text = ("tinybert-c-config-v1 vocab_size=%d hidden_size=%d num_hidden_layers=%d "
            "num_attention_heads=%d intermediate_size=%d max_position_embeddings=%d "
            "type_vocab_size=%d layer_norm_eps=%s pad_token_id=%d head=%d num_labels=%d") % (
        c["vocab_size"], c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
        c["intermediate_size"], c["max_position_embeddings"], c["type_vocab_size"],
        _g9(float(c.get("layer_norm_eps", 1e-12))), c.get("pad_token_id", 0), head,
        0 if head == 0 else int(c.get("num_labels", len(c.get("id2label", {})))))
    return fnv1a64(text.encode())


def _g9(x: float) -> str:
    """C's %.9g of a float32 value."""
    import numpy as np
    return "%.9g" % float(np.float32(x))
