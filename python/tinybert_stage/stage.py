"""A Python program as a tinybert-c stage: the same command line conventions, --help and
--describe (docs/stages.md), so tb-pipeline --check can check it like a C stage.

    STAGE = Stage("tb-py-thing", "Does a thing.",
                  options=[Opt("input", "endpoint", None, "token batches to read", required=True),
                           Opt("mode", "enum", "a", "what to do", choices="a|b")],
                  inputs=[Port("input", "batch", BATCH_PORT)])
    args = STAGE.parse(sys.argv[1:])     # exits 0 after --help/--describe, 2 on a usage error
    args.input, args.mode, args.threads, ...

Exit codes: EXIT_OK 0, EXIT_FAIL 1, EXIT_USAGE 2, EXIT_INTERRUPTED 130.
"""
import json
import os
import signal
import sys

from .protocol import BATCH_FIELDS, FEATURE_FIELDS, PROTOCOL_VERSION, TEXT_FIELDS

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
TYPES = ("int", "float", "string", "bool", "enum", "endpoint")
LEVELS = ("debug", "info", "warn", "error", "quiet")


class Opt:
    def __init__(self, name, type, default, help, required=False, choices=None):
        if type not in TYPES:
            raise ValueError("option --%s: type %r is not one of %s" % (name, type, TYPES))
        self.name, self.type, self.default, self.help = name, type, default, help
        self.required, self.choices = required, choices


class Port:
    """An input or output of a stage: the option carrying the endpoint, the message kind, and
    fields as (name, dtype, shape, help)."""

    def __init__(self, option, message, fields, help=""):
        self.option, self.message, self.fields, self.help = option, message, fields, help


BATCH_PORT = [(f[0], f[1], f[2], f[4]) for f in BATCH_FIELDS if f[1] not in ("int", "str")]
FEATURE_PORT = BATCH_PORT + [(f[0].replace("<j>", "*").replace("<l>", "*"), f[1], f[2], f[4])
                             for f in FEATURE_FIELDS if f[1] not in ("int", "str", "bool")]
# a port of text messages (task rows; docs/protocol.md "Text rows"), as tb-augment and tb-tokenize declare
TEXT_PORT = [(f[0], f[1], "", f[3]) for f in TEXT_FIELDS]

COMMON = [
    Opt("threads", "int", "0", "threads; 0: TB_THREADS or every available core"),
    Opt("seed", "int", "42", "random seed"),
    Opt("log-level", "enum", "info", "messages on stderr at or above this level", choices="|".join(LEVELS)),
    Opt("metrics", "string", None, "append metrics as JSON lines to PATH ('-': stdout)"),
    Opt("progress", "enum", "auto", "progress on stderr", choices="auto|bar|plain|none"),
]


class UsageError(Exception):
    pass


def _value(o, text):
    if o.type == "int":
        try:
            return int(text, 10)
        except ValueError:
            raise UsageError("--%s: '%s' is not an integer" % (o.name, text))
    if o.type == "float":
        try:
            v = float(text)
        except ValueError:
            raise UsageError("--%s: '%s' is not a number" % (o.name, text))
        if v != v or v in (float("inf"), float("-inf")):
            raise UsageError("--%s: '%s' is not finite" % (o.name, text))
        return v
    if o.type == "bool":
        t = text.lower()
        if t in ("1", "true", "yes", "on"):
            return True
        if t in ("0", "false", "no", "off"):
            return False
        raise UsageError("--%s: '%s' is not a boolean" % (o.name, text))
    if o.type == "enum" and text not in o.choices.split("|"):
        raise UsageError("--%s: '%s' is not one of %s" % (o.name, text, o.choices))
    return text


class Args:
    def __repr__(self):
        return "Args(%r)" % self.__dict__


class Stage:
    def __init__(self, name, summary, options, inputs=(), outputs=()):
        self.name, self.summary = name, summary
        self.options, self.inputs, self.outputs = list(options), list(inputs), list(outputs)
        self.level = "info"

    def all_options(self):
        return self.options + COMMON

    def describe(self):
        """The --describe object of docs/stages.md (with "protocol")."""
        def default(o):
            if o.default is None:
                return None
            return _value(o, o.default) if o.type in ("int", "float", "bool") else o.default

        def param(o, common):
            p = {"name": o.name, "type": o.type, "default": default(o), "required": o.required, "help": o.help}
            if o.type == "enum":
                p["choices"] = o.choices.split("|")
            p["common"] = common
            return p

        def port(p):
            return {"option": p.option, "message": p.message, "help": p.help,
                    "fields": [{"name": n, "dtype": d, "shape": s, "help": h} for n, d, s, h in p.fields]}

        return {"stage": self.name, "summary": self.summary, "protocol": PROTOCOL_VERSION, "args": None,
                "inputs": [port(p) for p in self.inputs], "outputs": [port(p) for p in self.outputs],
                "parameters": [param(o, False) for o in self.options] + [param(o, True) for o in COMMON]}

    def help(self):
        lines = ["%s - %s" % (self.name, self.summary), "", "options:"]
        for o in self.all_options():
            d = "" if o.default is None else " (default %s)" % o.default
            r = " (required)" if o.required else ""
            ch = " [%s]" % o.choices if o.choices else ""
            lines.append("  --%-28s%s%s%s%s" % (o.name + " " + o.type.upper(), o.help, ch, d, r))
        lines.append("  --%-28s%s" % ("help", "this text"))
        lines.append("  --%-28s%s" % ("describe", "the stage's description as JSON (docs/stages.md)"))
        return "\n".join(lines) + "\n"

    def parse_args(self, argv):
        """Parses argv (without the program name) into Args; raises UsageError."""
        by = {o.name: o for o in self.all_options()}
        vals = {}
        i = 0
        while i < len(argv):
            a = argv[i]
            if a == "--":
                if i + 1 < len(argv):
                    raise UsageError("%s takes no positional arguments" % self.name)
                break
            if not a.startswith("--"):
                raise UsageError("%s takes no positional arguments ('%s')" % (self.name, a))
            name, eq, text = a[2:].partition("=")
            o = by.get(name)
            if o is None and name.startswith("no-") and name[3:] in by and by[name[3:]].type == "bool" and not eq:
                vals[name[3:]] = False
                i += 1
                continue
            if o is None:
                raise UsageError("unknown option '--%s' (see %s --help for the options)" % (name, self.name))
            if o.type == "bool" and not eq:
                vals[name] = True
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise UsageError("--%s: missing value (expected %s %s)"
                                         % (name, "an" if o.type[0] in "aeiou" else "a", o.type))
                    text = argv[i]
                vals[name] = _value(o, text)
            i += 1
        args = Args()
        for o in self.all_options():
            if o.name not in vals:
                if o.required:
                    raise UsageError("--%s is required (%s)" % (o.name, o.help))
                vals[o.name] = None if o.default is None else _value(o, o.default)
            setattr(args, o.name.replace("-", "_"), vals[o.name])
        return args

    def parse(self, argv):
        """--help / --describe (exit 0), usage errors (exit 2), then the parsed Args; installs
        SIGINT/SIGTERM as KeyboardInterrupt (exit 130 via run())."""
        if "--help" in argv:
            sys.stdout.write(self.help())
            sys.exit(EXIT_OK)
        if "--describe" in argv:
            sys.stdout.write(json.dumps(self.describe(), indent=2) + "\n")
            sys.exit(EXIT_OK)
        try:
            args = self.parse_args(argv)
        except UsageError as e:
            sys.stderr.write("%s: %s\n" % (self.name, e))
            sys.exit(EXIT_USAGE)
        self.level = args.log_level
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        return args

    def log(self, level, text):
        """`[name] level: text` on stderr, at or above --log-level."""
        if LEVELS.index(level) >= LEVELS.index(self.level):
            sys.stderr.write("[%s] %s: %s\n" % (self.name, level, text))
            sys.stderr.flush()

    def check_outputs(self, args, outputs, inputs):
        """Refuses an output option naming the same file as an input option (as the C stages,
        tb/base/outfile.h): raises ValueError "--output 'X' is the same file as --input 'Y': ...".
        `outputs` and `inputs` are option names; options not given are skipped."""
        def value(name):
            return getattr(args, name.replace("-", "_"), None)
        for o in outputs:
            for i in inputs:
                if value(o) and value(i) and same_file(value(o), value(i)):
                    raise ValueError("--%s '%s' is the same file as --%s '%s': writing it would destroy the input; "
                                     "choose another output path" % (o, value(o), i, value(i)))

    def run(self, main, argv=None):
        """Runs main(args) -> exit code, mapping errors to exit 1 (message on stderr) and
        interruption to 130."""
        args = self.parse(sys.argv[1:] if argv is None else argv)
        try:
            code = main(args)
        except KeyboardInterrupt:
            self.log("error", "interrupted")
            return EXIT_INTERRUPTED
        except Exception as e:  # the stage's error, as one line
            self.log("error", "%s" % e)
            return EXIT_FAIL
        return EXIT_OK if code is None else code


def endpoint_file(endpoint):
    """The file an endpoint or path names ("file:P", "file://P", "P"); None for tcp://, ipc://,
    inproc:// and "-"."""
    if not endpoint or endpoint == "-" or endpoint.startswith(("tcp://", "ipc://", "inproc://")):
        return None
    for prefix in ("file://", "file:"):
        if endpoint.startswith(prefix):
            return endpoint[len(prefix):]
    return endpoint


def same_file(a, b):
    """True when endpoints a and b name the same file: device and inode when both exist, else the
    same normalised absolute path (symbolic links of existing folders resolved)."""
    pa, pb = endpoint_file(a), endpoint_file(b)
    if not pa or not pb:
        return False
    if os.path.exists(pa) and os.path.exists(pb):
        return os.path.samefile(pa, pb)
    return os.path.realpath(pa) == os.path.realpath(pb)
