#!/usr/bin/env python3
"""Fails when a production source or header includes across the layering.

usage: scripts/check-layering.py [--root DIR] [--farm DIR] MANIFEST

MANIFEST is BUILD_DIR/layering.manifest, written by cmake/SluiceLayering.cmake
from every sl_module(NAME SOURCES ... DEPS ... [INTERNAL ...]). The rule
(docs/ARCHITECTURE.md, "How layering is declared and checked"):

  a module may include its own headers and the public headers of the modules
  in its transitive DEPS; a header named *_int.h, or listed after INTERNAL,
  is included only by its own module (and not from its public headers).

A header belongs to the module that lists it as INTERNAL, else to the module
whose public include directory holds it (include/ of libsluice), else to the
module whose sources share its folder (by file stem, foo.h and foo_int.h go
with foo.c, when several modules share one folder). Every violation is
printed as FILE:LINE: message; the exit status is 1 when there is any.

With --farm DIR (run by CMake at configure time) it writes, instead of
checking, DIR/MODULE/own/ (symbolic links to all of a module's headers) and
DIR/MODULE/pub/ (its public headers only), each under its path from the
root (store/store.h): sl_module() compiles a module with its own/ and
exports pub/ to its dependents, so the compiler refuses what the rule does.
"""

import argparse
import os
import re
import sys
from collections import defaultdict

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


class Layering:
    def __init__(self, root, manifest):
        self.root = os.path.realpath(root)
        self.modules = []
        self.deps = defaultdict(list)
        self.srcs = defaultdict(list)  # module -> files
        self.internal = {}  # header -> module
        self.incdirs = []  # (dir, module)
        self.errors = []
        with open(manifest, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.split("#", 1)[0].split()
                if not line:
                    continue
                kind, args = line[0], line[1:]
                if kind == "module" and len(args) == 1:
                    self.modules.append(args[0])
                elif kind == "dep" and len(args) == 2:
                    self.deps[args[0]].append(args[1])
                elif kind == "src" and len(args) == 2:
                    self.srcs[args[0]].append(os.path.normpath(args[1]))
                elif kind == "internal" and len(args) == 2:
                    self.internal[os.path.normpath(args[1])] = args[0]
                elif kind == "incdir" and len(args) == 2:
                    self.incdirs.append((os.path.normpath(args[1]), args[0]))
                else:
                    sys.exit(f"{manifest}:{n}: cannot read this line")
        # folder -> modules with sources there, and stem -> module per folder
        self.dir_modules = defaultdict(set)
        self.stems = defaultdict(dict)
        for mod, files in self.srcs.items():
            for s in files:
                d, base = os.path.split(s)
                self.dir_modules[d].add(mod)
                self.stems[d][os.path.splitext(base)[0]] = mod

    def closure(self, mod):
        seen, todo = set(), list(self.deps[mod])
        while todo:
            d = todo.pop()
            if d not in seen:
                seen.add(d)
                todo.extend(self.deps[d])
        return seen

    def owner(self, path):
        """Module owning a file (relative path), or None."""
        if path in self.internal:
            return self.internal[path]
        for d, mod in self.incdirs:
            if path.startswith(d + os.sep):
                return mod
        d, base = os.path.split(path)
        here = self.dir_modules.get(d)
        if not here:
            return None
        if len(here) == 1:
            return next(iter(here))
        stem = os.path.splitext(base)[0]
        for s in (stem, re.sub(r"_int$", "", stem)):
            if s in self.stems[d]:
                return self.stems[d][s]
        self.errors.append(
            f"{path}:1: header shared by modules {', '.join(sorted(here))}: "
            "name its owner with sl_module(... INTERNAL ...) or by stem")
        return None

    def is_internal(self, path):
        return path in self.internal or path.endswith("_int.h")

    def resolve(self, src, kind, name):
        """The included file relative to the root, or None (system/generated)."""
        bases = [os.path.dirname(os.path.join(self.root, src))] if kind == '"' else []
        bases.append(self.root)
        bases += [os.path.join(self.root, d) for d, _ in self.incdirs]
        for b in bases:
            p = os.path.realpath(os.path.join(b, name))
            if os.path.isfile(p) and p.startswith(self.root + os.sep):
                return os.path.relpath(p, self.root)
        return None

    def production_files(self):
        """(file, module) for every module source and header."""
        files = {}
        for mod, srcs in self.srcs.items():
            for s in srcs:
                files[s] = mod
        dirs = set(self.dir_modules) | {d for d, _ in self.incdirs}
        for d in sorted(dirs):
            full = os.path.join(self.root, d)
            walk = os.walk(full) if any(d == i for i, _ in self.incdirs) else \
                [(full, [], os.listdir(full) if os.path.isdir(full) else [])]
            for top, _, names in walk:
                for n in names:
                    if n.endswith(".h"):
                        rel = os.path.relpath(os.path.join(top, n), self.root)
                        mod = self.owner(rel)
                        if mod and rel not in files:
                            files[rel] = mod
        return files

    def check(self):
        closures = {m: self.closure(m) for m in self.modules}
        files = self.production_files()
        for path in sorted(files):
            mod = files[path]
            try:
                with open(os.path.join(self.root, path), encoding="utf-8") as f:
                    lines = f.readlines()
            except OSError as e:
                self.errors.append(f"{path}:1: cannot read: {e.strerror}")
                continue
            for n, line in enumerate(lines, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = self.resolve(path, m.group(1), m.group(2))
                if target is None:
                    continue
                where = f'{path}:{n}: {mod} includes "{m.group(2)}"'
                owner = self.owner(target)
                if owner == mod:
                    if (path.endswith(".h") and not self.is_internal(path)
                            and self.is_internal(target)):
                        self.errors.append(
                            f"{where}: a public header exposes an internal one "
                            f"to every dependent of {mod}")
                    continue
                if owner is None:
                    self.errors.append(f"{where}, which belongs to no module")
                elif self.is_internal(target):
                    self.errors.append(
                        f"{where}, an internal header of {owner} "
                        f"(only {owner} may include it)")
                elif owner not in closures.get(mod, set()):
                    self.errors.append(
                        f"{where} of {owner}, which is not in its DEPS "
                        f"(add it to sl_module({mod} ... DEPS) if the layering allows)")
        return self.errors


def farm(lay, out):
    """Writes the include farm (see the module docstring); out is replaced."""
    import shutil
    shutil.rmtree(out, ignore_errors=True)
    for path, mod in sorted(lay.production_files().items()):
        if not path.endswith(".h"):
            continue
        if any(path.startswith(d + os.sep) for d, _ in lay.incdirs):
            continue  # exported by the module's own include directory
        kinds = ["own"] if lay.is_internal(path) else ["own", "pub"]
        for kind in kinds:
            link = os.path.join(out, mod, kind, path)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(os.path.join(lay.root, path), link)
    for mod in lay.modules:
        for kind in ("own", "pub"):
            os.makedirs(os.path.join(out, mod, kind), exist_ok=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--farm", metavar="DIR")
    ap.add_argument("manifest")
    args = ap.parse_args()
    lay = Layering(args.root, args.manifest)
    if args.farm:
        return farm(lay, args.farm)
    errors = lay.check()
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"check-layering: {len(errors)} include(s) cross the layering "
              "(docs/ARCHITECTURE.md)", file=sys.stderr)
        return 1
    print(f"check-layering: {len(lay.modules)} modules, "
          f"{len(lay.production_files())} files ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
