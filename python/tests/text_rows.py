"""Writes message files of text rows (docs/protocol.md "Text rows") with the Python kit, for
tests/integration/test_augment_stream.c.

    text_rows.py rows OUT FORMAT TSV CHUNK [--no-header]
        the lines of TSV as text messages of CHUNK rows each; the first line is the header
        unless --no-header
    text_rows.py bad OUT KIND
        one malformed text message: KIND = no-rows (no "rows"), rows-int ("rows" an integer),
        no-newline ("rows" without its final newline)
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tinybert_stage import Writer, text_message  # noqa: E402


def write_rows(out, fmt, tsv, chunk, header_line):
    with open(tsv, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    header = lines.pop(0) if header_line else None
    w = Writer(out)
    try:
        for i in range(0, len(lines), chunk):
            w.write(text_message(fmt, lines[i:i + chunk], header))
        w.finish()
    finally:
        w.close()


def write_bad(out, kind):
    m = text_message("sst-2", ["a fine film\t1", "a dull one\t0"], "sentence\tlabel")
    if kind == "no-rows":
        del m["rows"]
    elif kind == "rows-int":
        m["rows"] = 7
    elif kind == "no-newline":
        m["rows"] = m["rows"][:-1]
    else:
        raise SystemExit("unknown kind " + kind)
    w = Writer(out)
    try:
        w.write(m)
        w.finish()
    finally:
        w.close()


def main(argv):
    if argv[1] == "rows":
        write_rows(argv[2], argv[3], argv[4], int(argv[5]), "--no-header" not in argv[6:])
    elif argv[1] == "bad":
        write_bad(argv[2], argv[3])
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
