"""Checks that the kit's field tables (python/tinybert_stage/protocol.py) and the tables of
docs/protocol.md ("#### `kind`" sections, "#### text fields") and docs/emit.md ("#### batch fields", "#### feature
fields", "#### request fields") list the same fields with the same types and required flags.

    check_docs.py SOURCE_DIR      exit 0 when they agree; every difference on stderr otherwise
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tinybert_stage import protocol  # noqa: E402


def tables(path):
    """{heading: [row cells]} for every '#### heading' followed by a markdown table."""
    out, heading, rows = {}, None, None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("#### "):
            heading = line[5:].strip().strip("`")
            rows = out.setdefault(heading, [])
            continue
        if heading is None:
            continue
        if not line.startswith("|"):
            if rows:  # the table under the heading ended
                heading = None
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells and (cells[0] in ("field",) or set(cells[0]) <= set("-")):
            continue
        rows.append([c.strip("`") for c in cells])
    return out


def compare(what, doc_rows, kit_rows, problems):
    doc = {r[0]: r[1:] for r in doc_rows}
    kit = {r[0]: r[1:] for r in kit_rows}
    for name in sorted(set(doc) | set(kit)):
        if name not in doc:
            problems.append("%s: field %s is in the kit but not in the docs" % (what, name))
        elif name not in kit:
            problems.append("%s: field %s is in the docs but not in the kit" % (what, name))
        elif doc[name] != kit[name]:
            problems.append("%s: field %s is %s in the docs, %s in the kit" % (what, name, doc[name], kit[name]))


def yes(b):
    return "yes" if b else "no"


def main(src):
    problems = []
    pt = tables(os.path.join(src, "docs", "protocol.md"))
    compare("docs/protocol.md every message", [r[:3] for r in pt.get("every message", [])],
            [[f, t, yes(req)] for f, t, req, _ in protocol.COMMON_FIELDS], problems)
    for kind in protocol.KINDS:
        compare("docs/protocol.md %s" % kind, [r[:3] for r in pt.get(kind, [])],
                [[f, t, yes(req)] for f, t, req, _ in protocol.FIELDS[kind]], problems)
    compare("docs/protocol.md text fields", [r[:3] for r in pt.get("text fields", [])],
            [[f, t, yes(req)] for f, t, req, _ in protocol.TEXT_FIELDS], problems)
    et = tables(os.path.join(src, "docs", "emit.md"))
    for heading, kit in (("batch fields", protocol.BATCH_FIELDS), ("feature fields", protocol.FEATURE_FIELDS),
                         ("request fields", protocol.REQUEST_FIELDS)):
        compare("docs/emit.md %s" % heading, [r[:4] for r in et.get(heading, [])],
                [[f, d, s, yes(req)] for f, d, s, req, _ in kit], problems)
    for p in problems:
        sys.stderr.write(p + "\n")
    if not pt or not et:
        sys.stderr.write("no tables found\n")
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
