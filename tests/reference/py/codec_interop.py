"""Reference side of tests/reference/test_codec_python.c: tinybert-c messages vs msgpack-numpy.

    codec_interop.py check FILE   FILE was written by tb_codec_encode; decode it with msgpack +
                                  msgpack_numpy and compare every value bit for bit against the
                                  values computed here; check that every tensor payload starts at
                                  a 64-byte aligned offset (walking the bytes with msgpack.Unpacker).
    codec_interop.py make FILE    write the same message with msgpack_numpy.packb (its own,
                                  unpadded layout) plus Python-only extras, for the C side to decode.

The message content is defined by formulas shared with the C test (see EXPECTED below):
  pattern tensors "p.<dtype>": payload byte k = (131*k + 7*seed + 3) mod 256 (bool: & 1)
  value tensors "v.*": small closed-form values, exactly representable in their dtype.
Exit status 0 when everything matches; otherwise the mismatches are printed on stderr.
"""
import sys

import msgpack
import msgpack_numpy
import numpy as np

PATTERN_DTYPES = ["<f4", "<f2", "<f8", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "|b1"]
PATTERN_SHAPE = (3, 5, 7)


def pattern(dtype, shape, seed):
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    k = np.arange(nbytes, dtype=np.int64)
    b = ((131 * k + 7 * seed + 3) % 256).astype(np.uint8)
    if dt.kind == "b":
        b &= 1
    return np.frombuffer(b.tobytes(), dtype=dt).reshape(shape)


def expected():
    """The message both sides build: name -> value."""
    e = {
        "msg": "batch",
        "seq": 42,
        "big": 2**63 - 1,
        "small": -(2**63),
        "neg": -7,
        "flag": True,
        "off": False,
        "none": None,
        "lr": 0.001,
        "name": "h\u00e9llo w\u00f6rld",
    }
    for seed, dt in enumerate(PATTERN_DTYPES):
        e["p." + np.dtype(dt).name] = pattern(dt, PATTERN_SHAPE, seed)
    e["p.big"] = pattern("<f4", (100, 200), 30)  # 80000 bytes: bin32 header
    i = np.arange(12)
    e["v.f32"] = (i * 0.5 - 3).astype("<f4").reshape(3, 4)
    e["v.f16"] = (np.arange(8) * 0.25).astype("<f2")
    e["v.i64"] = (np.arange(10, dtype=np.int64) * 10**12 - 5 * 10**12).astype("<i8")
    e["v.bool"] = (np.arange(10) % 3 == 0).reshape(2, 5)
    e["v.u8"] = ((np.arange(16) * 37) % 256).astype("|u1")
    e["scalar"] = np.array(-0.125, dtype="<f8")
    e["empty"] = np.zeros((0,), dtype="<f4")
    e["empty3"] = np.zeros((2, 0, 3), dtype="<i4")
    m = np.arange(3)[:, None] * 10 + np.arange(4)[None, :]
    e["strided"] = m.astype("<i4").T  # 4x3, not C-contiguous
    return e


BF16_SHAPE = (4, 6)
BF16_SEED = 20


def same(a, b):
    """Bit-for-bit equality of two decoded values (arrays: dtype, shape and bytes)."""
    if isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())
    if isinstance(b, float):
        return isinstance(a, float) and np.float64(a).tobytes() == np.float64(b).tobytes()
    return type(a) is type(b) and a == b


def payload_offsets(buf):
    """Walks the top-level map with msgpack.Unpacker and returns {key: (payload offset, tensor map
    keys)} for every tensor map."""
    u = msgpack.Unpacker(raw=False, max_buffer_size=len(buf) + 16)
    u.feed(buf)
    out = {}
    for _ in range(u.read_map_header()):
        key = u.unpack()
        start = u.tell()
        if buf[start] & 0xF0 != 0x80 and buf[start] not in (0xDE, 0xDF):
            u.skip()
            continue
        keys = []
        for _ in range(u.read_map_header()):
            k = u.unpack()
            keys.append(k)
            if k == b"data":
                at = u.tell()
                hdr = {0xC4: 2, 0xC5: 3, 0xC6: 5}[buf[at]]
                out[key] = (at + hdr, keys)
            u.skip()
    return out


def check(path):
    buf = open(path, "rb").read()
    errors = []
    got = msgpack_numpy.unpackb(buf, raw=False)
    raw = msgpack.unpackb(buf, raw=False)
    exp = expected()
    exp_keys = set(exp) | {"bf16"}
    if set(got) != exp_keys:
        errors.append("keys differ: extra %s, missing %s" % (sorted(set(got) - exp_keys),
                                                              sorted(exp_keys - set(got))))
    for k, v in exp.items():
        if k in got and not same(got[k], v):
            errors.append("%s: got %r, expected %r" % (k, got[k], v))
    # bf16: numpy sees the raw uint16 bit patterns; the tag says what they are
    bf = got.get("bf16")
    if not same(bf, pattern("<u2", BF16_SHAPE, BF16_SEED)):
        errors.append("bf16: got %r" % (bf,))
    if raw.get("bf16", {}).get(b"tb_dtype") != "bf16" or raw["bf16"].get(b"type") != "<u2":
        errors.append("bf16 tensor map lacks type '<u2' / tb_dtype 'bf16': %r" % (raw.get("bf16"),))
    # every tensor map: msgpack-numpy keys as bin, type as str, payload 64-byte aligned
    offs = payload_offsets(buf)
    tensor_keys = [k for k, v in exp.items() if isinstance(v, np.ndarray)] + ["bf16"]
    for k in tensor_keys:
        if k not in offs:
            errors.append("%s: no tensor map with a 'data' key found" % k)
            continue
        at, keys = offs[k]
        if at % 64:
            errors.append("%s: payload at offset %d is not 64-byte aligned" % (k, at))
        if keys[:4] != [b"nd", b"type", b"kind", b"shape"] or b"tb_pad" not in keys:
            errors.append("%s: unexpected tensor map keys %r" % (k, keys))
        if not isinstance(raw[k][b"type"], str) or raw[k][b"kind"] != b"":
            errors.append("%s: type must be a str and kind an empty bin: %r" % (k, raw[k]))
    for e in errors:
        print("codec_interop check: " + e, file=sys.stderr)
    print("checked %d fields, %d tensor payloads aligned" % (len(got), len(offs)))
    return 1 if errors else 0


def make(path):
    msg = expected()
    msg["bf16"] = pattern("<u2", BF16_SHAPE, BF16_SEED)  # Python has no bf16: arrives as u16
    msg["fortran"] = np.asfortranarray(msg["v.f32"])     # written C-order by tobytes()
    msg["npscalar"] = np.int64(-5)                       # {nd: false} map
    msg["npf16"] = np.float16(1.5)
    with open(path, "wb") as f:
        f.write(msgpack_numpy.packb(msg))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("check", "make"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(check(sys.argv[2]) if sys.argv[1] == "check" else make(sys.argv[2]))
