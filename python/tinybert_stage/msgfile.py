"""Message files (docs/protocol.md section 6): the batch maps of a stream, in order, with an END
record, each record checked by CRC-32C. Reader and Writer; the writer creates PATH.tmp and
renames it to PATH when finish() wrote the END record, so a file appears only when complete.

CRC-32C is computed in pure Python (no dependency beyond the standard library): a few MB/s,
fine for token batches and small feature files.
"""
import os
import struct

import msgpack
import msgpack_numpy

MAGIC = b"TBSTRM\r\n"
VERSION = 1
MARKER = 0x31524254  # "TBR1"
KIND_MESSAGE, KIND_END = 1, 2
FILE_HEADER = struct.Struct("<8sII")
RECORD_HEADER = struct.Struct("<IIQII")  # marker, kind, length, payload_crc, header_crc

_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli) of data, continuing from crc (0 to start)."""
    c = crc ^ 0xFFFFFFFF
    t = _TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def file_path(endpoint):
    return endpoint[5:] if endpoint.startswith("file:") else endpoint


def _record(kind, payload):
    head = struct.pack("<IIQI", MARKER, kind, len(payload), crc32c(payload))
    return head + struct.pack("<I", crc32c(head)) + payload


class FormatError(Exception):
    pass


class Writer:
    def __init__(self, path, stream_id="main"):
        self.path = path
        self.tmp = path + ".tmp"
        self.stream_id = stream_id
        self.count = 0
        self.f = open(self.tmp, "wb")
        self.f.write(FILE_HEADER.pack(MAGIC, VERSION, 0))

    def write(self, m):
        """Writes one batch map; "msg", "stream" and "seq" are set here."""
        m = dict(m)
        m.update({"msg": "batch", "stream": self.stream_id, "seq": self.count})
        payload = msgpack.packb(m, default=msgpack_numpy.encode, use_bin_type=True)
        self.f.write(_record(KIND_MESSAGE, payload))
        self.count += 1

    def finish(self):
        self.f.write(_record(KIND_END, struct.pack("<Q", self.count)))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        self.f = None
        os.replace(self.tmp, self.path)

    def close(self):
        """Closes; a file that was not finished is removed (it never appears under its name)."""
        if self.f:
            self.f.close()
            self.f = None
            os.unlink(self.tmp)


class Reader:
    """Reads and checks a message file; read() returns the next map (dict with str keys) and
    raises stream.EndOfStream at the END record."""

    def __init__(self, path, stream_id=None, resume_from=0):
        self.path = path
        self.f = open(path, "rb")
        self.size = os.fstat(self.f.fileno()).st_size
        self.record = 0
        self.count = 0
        self.ended = False
        head = self.f.read(FILE_HEADER.size)
        if len(head) < FILE_HEADER.size:
            raise FormatError("%s: %d bytes, shorter than the 16-byte file header" % (path, len(head)))
        magic, version, _ = FILE_HEADER.unpack(head)
        if magic != MAGIC:
            raise FormatError("%s: not a tinybert-c message file (magic %r)" % (path, magic))
        if version != VERSION:
            raise FormatError("%s: message file version %d; this reader knows version %d" % (path, version, VERSION))
        while self.count < resume_from:
            self.read()

    def _where(self, off):
        return "%s: record %d at byte %d" % (self.path, self.record, off)

    def read_raw(self):
        """(kind, payload bytes) of the next record, checked."""
        off = self.f.tell()
        head = self.f.read(RECORD_HEADER.size)
        if not head:
            raise FormatError("%s: ends after %d messages without an END record (truncated?)" % (self.path, self.count))
        if len(head) < RECORD_HEADER.size:
            raise FormatError("%s: truncated record header" % self._where(off))
        marker, kind, length, pcrc, hcrc = RECORD_HEADER.unpack(head)
        if crc32c(head[:20]) != hcrc:
            raise FormatError("%s: record header checksum mismatch" % self._where(off))
        if marker != MARKER:
            raise FormatError("%s: bad record marker 0x%08x" % (self._where(off), marker))
        if length > self.size - off - RECORD_HEADER.size:
            raise FormatError("%s: declares %d payload bytes, only %d left" % (self._where(off), length,
                                                                              self.size - off - RECORD_HEADER.size))
        payload = self.f.read(length)
        if crc32c(payload) != pcrc:
            raise FormatError("%s: payload checksum mismatch" % self._where(off))
        self.record += 1
        return kind, payload, off

    def read(self):
        from .stream import EndOfStream, decode
        if self.ended:
            raise EndOfStream(self.count)
        kind, payload, off = self.read_raw()
        if kind == KIND_END:
            if len(payload) != 8:
                raise FormatError("%s: END record of %d bytes (expected 8)" % (self._where(off), len(payload)))
            (n,) = struct.unpack("<Q", payload)
            if n != self.count:
                raise FormatError("%s: END says %d messages, the file has %d" % (self._where(off), n, self.count))
            self.ended = True
            raise EndOfStream(n)
        if kind != KIND_MESSAGE:
            raise FormatError("%s: unknown record kind %d" % (self._where(off), kind))
        m = decode(payload)
        if m.get("seq") != self.count:
            raise FormatError("%s: seq %r, expected %d" % (self._where(off), m.get("seq"), self.count))
        self.count += 1
        return m

    def close(self):
        self.f.close()


def end_count(path):
    """The count of the END record at the end of the message file `path` (checksums checked;
    the records themselves are checked as a Reader reads them)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        if size < FILE_HEADER.size + RECORD_HEADER.size + 8:
            raise FormatError("%s: %d bytes, no END record (truncated?)" % (path, size))
        f.seek(size - RECORD_HEADER.size - 8)
        tail = f.read(RECORD_HEADER.size + 8)
    marker, kind, length, pcrc, hcrc = RECORD_HEADER.unpack(tail[:RECORD_HEADER.size])
    payload = tail[RECORD_HEADER.size:]
    if (marker != MARKER or kind != KIND_END or length != 8 or hcrc != crc32c(tail[:20])
            or pcrc != crc32c(payload)):
        raise FormatError("%s does not end with an END record (truncated?)" % path)
    return struct.unpack("<Q", payload)[0]
