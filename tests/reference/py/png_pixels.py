#!/usr/bin/python3
"""png_pixels.py IMAGE.png RRGGBB... - decodes a PNG with the standard library only (zlib, the
five PNG row filters) and prints how many pixels have each given colour, as "rrggbb:count ...".
Used by tests/unit/test_plot.c to check that every curve of a plot was actually drawn. Exits
non-zero with a message on a malformed file: a chunk CRC mismatch, an IDAT size that does not
match the IHDR, or a layout other than 8-bit RGB/RGBA non-interlaced (what gnuplot writes)."""
import collections
import struct
import sys
import zlib


def pixels(path):
    b = open(path, 'rb').read()
    if b[:8] != b'\x89PNG\r\n\x1a\n':
        sys.exit('%s: not a PNG' % path)
    pos, idat, hdr = 8, b'', None
    while pos < len(b):
        n, = struct.unpack('>I', b[pos:pos + 4])
        t, d = b[pos + 4:pos + 8], b[pos + 8:pos + 8 + n]
        if zlib.crc32(t + d) != struct.unpack('>I', b[pos + 8 + n:pos + 12 + n])[0]:
            sys.exit('%s: bad CRC in chunk %r' % (path, t))
        pos += 12 + n
        if t == b'IHDR':
            hdr = struct.unpack('>IIBBBBB', d)
        elif t == b'IDAT':
            idat += d
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        sys.exit('%s: unexpected PNG layout %r' % (path, hdr))
    bpp = 3 if ctype == 2 else 4
    raw, stride = zlib.decompress(idat), w * bpp
    if len(raw) != h * (stride + 1):
        sys.exit('%s: IDAT holds %d bytes, the IHDR needs %d' % (path, len(raw), h * (stride + 1)))
    prev, count = bytearray(stride), collections.Counter()
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            up = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + up) & 255
            elif f == 3:
                line[i] = (line[i] + (a + up) // 2) & 255
            elif f == 4:
                p = a + up - c
                pa, pb, pc = abs(p - a), abs(p - up), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
            elif f != 0:
                sys.exit('%s: row %d has filter type %d' % (path, y, f))
        for x in range(w):
            count[bytes(line[x * bpp:x * bpp + 3]).hex()] += 1
        prev = line
    return count


def main():
    count = pixels(sys.argv[1])
    print(' '.join('%s:%d' % (k.lower(), count[k.lower()]) for k in sys.argv[2:]))


if __name__ == '__main__':
    main()
