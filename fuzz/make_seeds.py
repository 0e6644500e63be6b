"""Writes the seed corpus of fuzz_codec_decode into fuzz/corpus/ (run with /usr/bin/python3).

Valid messages come from msgpack + msgpack_numpy (Python's layout) and from a hand-built copy of
tinybert-c's padded layout; malformed ones cover each class of error the decoder reports.
"""
import os
import sys

import msgpack
import msgpack_numpy
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def tensor_map(arr, pad=None, tag=None, **override):
    m = {b"nd": True, b"type": arr.dtype.str, b"kind": b"", b"shape": list(arr.shape)}
    if tag is not None:
        m[b"tb_dtype"] = tag
    if pad is not None:
        m[b"tb_pad"] = b"\0" * pad
    m[b"data"] = arr.tobytes()
    for k, v in override.items():
        m[k.encode()] = v
    return m


def padded(fields):
    """tinybert-c layout: every 'data' payload 64-byte aligned, found by trying pad lengths."""
    out = {}
    for k, v in fields.items():
        if isinstance(v, np.ndarray):
            for pad in range(64):
                trial = dict(out)
                trial[k] = tensor_map(v, pad=pad)
                buf = msgpack.packb(trial)
                if buf.find(v.tobytes() if v.nbytes else b"\xff") % 64 == 0 or v.nbytes == 0:
                    break
            out[k] = tensor_map(v, pad=pad)
        else:
            out[k] = v
    return msgpack.packb(out)


def seeds():
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((2, 3)).astype("<f4")
    yield "valid_python_batch", msgpack_numpy.packb({
        "msg": "batch", "stream": 1, "seq": 7,
        "input_ids": rng.integers(0, 30522, (2, 8)).astype("<i8"),
        "attention_mask": np.ones((2, 8), dtype="|b1"),
        "teacher.logits": x, "half": x.astype("<f2"), "u8": np.arange(5, dtype="|u1"),
        "scalar": np.array(2.5, "<f8"), "empty": np.zeros((0, 4), "<f4"), "npint": np.int64(-3)})
    yield "valid_scalars", msgpack.packb({"msg": "hello", "n": None, "t": True, "f": False,
                                         "i": -2**63, "u": 2**63 - 1, "d": 1.5, "s": "x\u00e9"})
    yield "valid_f32_single", msgpack.packb({"x": 1.25}, use_single_float=True)
    yield "valid_empty_map", msgpack.packb({})
    yield "valid_padded", padded({"msg": "batch", "seq": 3, "a": x, "b": np.arange(70, dtype="<i2"),
                                  "c": np.zeros((0,), "<f4")})
    yield "valid_bf16", msgpack.packb({"h": tensor_map(np.arange(4, dtype="<u2"), pad=3, tag="bf16")})
    yield "valid_str_keys_tensor", msgpack.packb({"t": {"nd": True, "type": "<i4", "kind": b"",
                                                        "shape": [2], "data": b"\1\0\0\0\2\0\0\0"}})
    # malformed
    good = msgpack.packb({"t": tensor_map(x)})
    yield "bad_truncated", good[:-5]
    yield "bad_trailing", good + b"\xc0"
    yield "bad_top_array", msgpack.packb([1, 2, 3])
    yield "bad_dup_key", b"\x82\xa1a\x01\xa1a\x02"
    yield "bad_big_endian", msgpack.packb({"t": tensor_map(x, type=">f4")})
    yield "bad_unknown_dtype", msgpack.packb({"t": tensor_map(x, type="<c8")})
    yield "bad_negative_dim", msgpack.packb({"t": tensor_map(x, shape=[-2, 3])})
    yield "bad_too_many_dims", msgpack.packb({"t": tensor_map(x, shape=[1] * 9)})
    yield "bad_size_mismatch", msgpack.packb({"t": tensor_map(x, shape=[2, 4])})
    yield "bad_huge_shape", msgpack.packb({"t": tensor_map(x, shape=[2**40, 2**40])})
    yield "bad_bool_value", msgpack.packb({"t": tensor_map(np.ones(3, "|u1") * 2, type="|b1")})
    yield "bad_kind_V", msgpack.packb({"t": tensor_map(x, kind=b"V")})
    yield "bad_bf16_tag", msgpack.packb({"t": tensor_map(x, tag="bf16")})
    yield "bad_nested_map", msgpack.packb({"cfg": {"a": 1}})
    yield "bad_array_value", msgpack.packb({"ids": [1, 2, 3]})
    yield "bad_bin_value", msgpack.packb({"b": b"xyz"})
    yield "bad_uint64", msgpack.packb({"u": 2**64 - 1})
    yield "bad_map32_count", b"\xdf\xff\xff\xff\xff"
    yield "bad_bin32_len", b"\x81\xa1t\x84\xc4\x02nd\xc3\xc4\x04data\xc6\xff\xff\xff\xff"
    yield "bad_ext", b"\x81\xa1x\xd4\x01\x00"
    yield "bad_c1", b"\x81\xa1x\xc1"
    yield "bad_nul_key", b"\x81\xa2a\x00\x01"


def main():
    os.makedirs(OUT, exist_ok=True)
    n = 0
    for name, data in seeds():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        n += 1
    print("wrote %d seeds to %s" % (n, OUT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
