"""Writes the seed corpora of the decoder fuzz targets (run with /usr/bin/python3 from anywhere):

  fuzz/corpus-safetensors/  .safetensors files: valid ones of each dtype and shape kind, metadata,
                            and malformed headers (bad length, JSON, dtype, shape, offsets, overlap)
  fuzz/corpus-config/       config.json files: the repository's configs/*.json and variants
  fuzz/corpus-pipeline/     pipeline files: pipelines/*.pipe and small cases of each construct
  fuzz/corpus-tsv/          one byte (format index, bit 7 = lenient; order of fuzz_tsv.c) + a file
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def write(target, name, data):
    d = os.path.join(HERE, "corpus-" + target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(entries, meta=None, pad=True, extra=b""):
    """entries: name -> (dtype, shape, bytes); data laid out in order."""
    header, blobs, off = {}, [], 0
    for name, (dt, shape, blob) in entries.items():
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    if meta is not None:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs) + extra


def seeds_safetensors():
    f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)
    write("safetensors", "empty", safetensors({}))
    write("safetensors", "one_f32", safetensors({"w": ("F32", [2, 2], f32)}))
    write("safetensors", "meta", safetensors({"w": ("F32", [4], f32)}, meta={"format": "pt"}))
    write("safetensors", "dtypes", safetensors({
        "a": ("F16", [2], b"\x00\x3c\x00\xc0"), "b": ("BF16", [1], b"\x80\x3f"), "c": ("I32", [1], b"\x07\0\0\0"),
        "d": ("I64", [1], b"\x01" + b"\0" * 7), "e": ("U8", [3], b"abc"), "f": ("BOOL", [1], b"\x01"),
        "g": ("F64", [1], struct.pack("<d", 2.5))}))
    write("safetensors", "scalar_and_empty", safetensors({"s": ("F32", [], f32[:4]), "z": ("F32", [0, 3], b"")}))
    write("safetensors", "bert_like", safetensors({
        "bert.embeddings.word_embeddings.weight": ("F32", [2, 2], f32),
        "classifier.bias": ("F32", [2], f32[:8])}, meta={"format": "pt", "content": "tinybert-c"}))
    good = safetensors({"w": ("F32", [2, 2], f32)})
    write("safetensors", "bad_len_huge", struct.pack("<Q", 1 << 40) + good[8:])
    write("safetensors", "bad_short", good[:5])
    write("safetensors", "bad_json", struct.pack("<Q", 8) + b"{\"w\":   ")
    write("safetensors", "bad_dtype", safetensors({"w": ("F33", [4], f32)}))
    write("safetensors", "bad_shape", safetensors({"w": ("F32", [3], f32)}))
    write("safetensors", "bad_negative_shape", safetensors({"w": ("F32", [-1, -4], f32)}))
    h = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}'
    write("safetensors", "bad_overlap", struct.pack("<Q", len(h)) + h + f32)
    h = b'{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    write("safetensors", "bad_duplicate", struct.pack("<Q", len(h)) + h + f32)
    write("safetensors", "bad_trailing", safetensors({"w": ("F32", [2, 2], f32)}, extra=b"xyz"))


def seeds_config():
    for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
        if name.endswith(".json"):
            with open(os.path.join(ROOT, "configs", name), "rb") as f:
                write("config", name, f.read())
    base = {"vocab_size": 40, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 32, "max_position_embeddings": 16, "type_vocab_size": 2,
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu"}
    write("config", "tiny", json.dumps(base))
    write("config", "labels", json.dumps(dict(base, num_labels=3, id2label={"0": "a", "1": "b", "2": "c"})))
    write("config", "bad_heads", json.dumps(dict(base, num_attention_heads=3)))
    write("config", "bad_type", json.dumps(dict(base, hidden_size="16")))
    write("config", "bad_huge", json.dumps(dict(base, vocab_size=1e300)))
    write("config", "bad_syntax", json.dumps(base)[:-5])


def seeds_pipeline():
    for name in sorted(os.listdir(os.path.join(ROOT, "pipelines"))):
        if name.endswith(".pipe"):
            with open(os.path.join(ROOT, "pipelines", name), "rb") as f:
                write("pipeline", name, f.read())
    write("pipeline", "vars_quotes", "# c\n[vars]\nA = x y\nB = ${A}/z\n\n[one]\nrun = tb-eval --model \"${B}\" "
          "--input 'a b' c\\ d ${RUN} ${NOPE:-fallback} $${lit} $HOME\nthreads = 2\ndescribe = no\n")
    write("pipeline", "after", "[a]\nrun = /bin/true\n[b]\nafter = a\nrun = /bin/echo hi\nstdout = /tmp/x\n"
          "[c]\nafter = a b\nrun = tb-tokenize --input x\ndescribe = auto\n")
    write("pipeline", "bad_cycle", "[a]\nafter = b\nrun = x\n[b]\nafter = a\nrun = y\n")
    write("pipeline", "bad_unterminated", "[a]\nrun = x \"unterminated\n")
    write("pipeline", "bad_key", "[a]\nrun = x\ncolour = red\n")
    write("pipeline", "bad_section", "[a\nrun = x\n")


FORMATS = ["corpus", "wikitext", "simple", "cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "mnli-mm", "qnli",
           "rte", "wnli"]


def tsv(fmt, text, lenient=False, suffix=""):
    write("tsv", ("lenient_" if lenient else "") + fmt.replace("-", "_") + suffix,
          bytes([FORMATS.index(fmt) | (0x80 if lenient else 0)]) + text.encode())


def seeds_tsv():
    tsv("corpus", "The first sentence.\nA second one.\n\nA new document.\n")
    tsv("wikitext", " = Title = \n\n The cat @-@ like <unk> sat @,@ well .\n\n = = Section = = \n More text .\n")
    tsv("simple", "good film\t1\nbad film\t0\na\tb\t2\n")
    tsv("simple", "good film\t1\nfragment without label\nx\tnotanumber\n", lenient=True)
    tsv("cola", "gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.\n")
    tsv("sst-2", "sentence\tlabel\nit 's a charming journey \t1\nunfunny \t0\n")
    tsv("mrpc", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said.\tHe stated.\n0\t3\t4\tA b.\tC d.\n")
    tsv("sts-b", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane.\tAn air plane.\t5.000\n")
    tsv("qqp", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t1\t2\tWhy?\tHow?\t0\n")
    tsv("mnli", "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
        "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
        "0\t1\t1e\tgov\t( a )\t( b )\t(A)\t(B)\tA man.\tA person.\tentailment\tentailment\n")
    tsv("qnli", "index\tquestion\tsentence\tlabel\n0\tWhat?\tThis.\tentailment\n1\tWho?\tThat.\tnot_entailment\n")
    tsv("rte", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tnot_entailment\n")
    tsv("wnli", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\t1\n")
    tsv("sst-2", "sentence\tlabel\nno label here\n", lenient=True)
    tsv("sts-b", "h\th\th\th\th\th\th\th\th\th\n0\tg\tf\ty\to\ts\ts\tA\tB\tnan\n", suffix="_nan")


if __name__ == "__main__":
    seeds_safetensors()
    seeds_config()
    seeds_pipeline()
    seeds_tsv()
    sys.exit(0)
