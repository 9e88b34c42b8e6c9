#!/usr/bin/env python3
"""Fails when a documented configuration key is never read.

Every row of the option tables in config/ (config/schema/*.c) (the keys docs/CONFIGURATION.md
lists) must be read somewhere in production code outside config/: the row's
C field (its full path, e.g. store.budget_bytes, or its last member) read as
`.field` / `->field` (an assignment does not count; a dotted field by at
least its last two members), or, for a row bound to a
library (BIND(LIB, T, field), config/bind.c), that library's options field
read by the library. Usage: check-config-keys.py [SOURCE_ROOT]
"""
import os
import re
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                       os.path.join(os.path.dirname(__file__), ".."))
# Not production code (or the engine itself, which reads every row).
SKIP = {"config", "tests", "loadtest", "build", "docs", "deploy", "scripts",
        "cmake", ".git", ".ci"}
LIB_DIRS = {"STORE": "store", "SYNC": "sync"}
CONVERSION = "config/schema/pipelines.c"
ROW = re.compile(r"\b([A-Z_]*OPT)\(")


def call_text(src, start):
    """The text of the macro call whose '(' is at start, without parens."""
    depth, i, instr = 0, start, False
    while i < len(src):
        c = src[i]
        if instr:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                instr = False
        elif c == '"':
            instr = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return src[start + 1:i]
        i += 1
    raise ValueError("unbalanced call")


def split_args(text):
    args, depth, cur, instr, i = [], 0, "", False, 0
    while i < len(text):
        c = text[i]
        if instr:
            cur += c
            if c == "\\":
                cur += text[i + 1]
                i += 1
            elif c == '"':
                instr = False
        elif c == '"':
            instr = True
            cur += c
        elif c in "([{":
            depth += 1
            cur += c
        elif c in ")]}":
            depth -= 1
            cur += c
        elif c == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
        else:
            cur += c
        i += 1
    args.append(cur.strip())
    return args


def rows():
    names = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "config")):
        names += [os.path.relpath(os.path.join(dirpath, f),
                                  os.path.join(ROOT, "config"))
                  for f in files if f.endswith(".c")]
    for name in sorted(names):
        src = open(os.path.join(ROOT, "config", name)).read()
        src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
        for m in ROW.finditer(src):
            if src[:m.start()].rstrip().endswith("define"):
                continue
            args = split_args(call_text(src, m.end() - 1))
            if len(args) < 3 or not args[0].startswith('"') or args[0] == "":
                continue
            if args[0].startswith('"') and "__VA_ARGS__" not in args:
                bind = None
                for a in args[6:]:
                    b = re.match(r"BIND\((\w+),\s*(\w+),\s*(\w+)\)", a)
                    if b:
                        bind = (b.group(1), b.group(3))
                yield name, args[0].strip('"'), args[2], bind


def sources(dirs=None):
    for top in sorted(os.listdir(ROOT)):
        path = os.path.join(ROOT, top)
        if not os.path.isdir(path) or top in SKIP or top.startswith("build"):
            continue
        if dirs is not None and top not in dirs:
            continue
        for d, _, files in os.walk(path):
            for f in files:
                if f.endswith((".c", ".h")):
                    yield os.path.join(d, f)


def reads(pattern, files):
    """True when some file reads a member matching pattern."""
    rx = re.compile(r"(?:\.|->)" + pattern + r"\b(?!\s*=[^=])")
    return any(rx.search(text) for text in files)


def without_rows(src):
    """src without comments and table rows (which name every field)."""
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    out, pos = [], 0
    for m in ROW.finditer(src):
        if m.start() < pos:
            continue
        out.append(src[pos:m.start()])
        pos = m.end() - 1 + len(call_text(src, m.end() - 1)) + 2
    out.append(src[pos:])
    return "".join(out)


def main():
    prod = [open(p, errors="replace").read() for p in sources()]
    # The pipeline conversion (config -> process) lives in config/: it is
    # the code that consumes the pipelines' rows.
    prod.append(without_rows(open(os.path.join(ROOT, CONVERSION)).read()))
    by_lib = {lib: [open(p, errors="replace").read()
                    for p in sources({d})] for lib, d in LIB_DIRS.items()}
    n, missing = 0, []
    for fname, key, field, bind in rows():
        n += 1
        if bind:
            lib, member = bind
            if lib not in by_lib:
                missing.append(f"{fname}: {key}: bound to unknown library {lib}")
            elif not reads(re.escape(member), by_lib[lib]):
                missing.append(f"{fname}: {key}: {LIB_DIRS[lib]}/ never reads "
                               f"its options field {member}")
            continue
        # A dotted field (store.budget_bytes) must be read by a path of at
        # least two members (limits.max_batch_events does not read
        # store.max_batch_events); a plain one (a list element's field) by
        # its name.
        parts = field.split(".")
        pats = [r"\s*\.\s*".join(map(re.escape, parts[i:]))
                for i in range(0, max(1, len(parts) - 1))]
        ok = any(reads(p, prod) for p in pats)
        if not ok and len(parts) >= 3:
            # A struct handed on by pointer (listeners.native_tls -> tls):
            # the struct is taken and its member read.
            parent = r"\s*\.\s*".join(map(re.escape, parts[:-1]))
            ok = reads(parent, prod) and reads(re.escape(parts[-1]), prod)
        if not ok:
            missing.append(f"{fname}: {key}: field {field} is never read "
                           "outside config/")
    if n < 100:
        print(f"check-config-keys: only {n} rows found; parser broken?")
        return 1
    for m in missing:
        print("documented key never read:", m)
    if missing:
        return 1
    print(f"check-config-keys: {n} keys, each read by the code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
