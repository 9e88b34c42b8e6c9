#!/usr/bin/python3
"""Exec a command under the seccomp filter the unit asks systemd for.

  seccomp_exec.py UNIT -- COMMAND...

Reads the unit's SystemCallFilter= lines (an allow list, then ~removals,
as systemd combines them), expands the @groups with `systemd-analyze
syscall-filter` (the same tables systemd uses), and loads, for the native
architecture only (SystemCallArchitectures=native):
  - every syscall not allowed: SystemCallErrorNumber= (EPERM);
  - RestrictAddressFamilies=: socket()/socketpair() of another family
    fails with EAFNOSUPPORT, as systemd does;
  - MemoryDenyWriteExecute=yes: mmap/mprotect/pkey_mprotect with both
    PROT_WRITE and PROT_EXEC fail with EPERM.
Needs no_new_privs set (setpriv --no-new-privs) when not root. Debian's
python3-seccomp; exit 77 without it.
"""
import errno
import os
import re
import socket
import subprocess
import sys

try:
    import seccomp
except ImportError:
    print("SKIP: python3-seccomp not installed", file=sys.stderr)
    sys.exit(77)


def groups():
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True,
                         text=True, check=True).stdout
    table, cur = {}, None
    for line in out.splitlines():
        if re.match(r"^@[\w-]+$", line):
            cur = table.setdefault(line.strip(), [])
        elif cur is not None and line.startswith("    ") and not line.strip().startswith("#"):
            cur.append(line.strip())
        elif not line.strip():
            cur = None
    return table


def expand(names, table, seen=None):
    seen = set() if seen is None else seen
    out = set()
    for n in names:
        if n.startswith("@"):
            if n not in seen:
                seen.add(n)
                out |= expand(table.get(n, []), table, seen)
        else:
            out.add(n)
    return out


def main():
    unit, cmd = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    with open(unit) as f:
        text = f.read()
    table = groups()
    allow = set()
    for line in re.findall(r"^SystemCallFilter=(.*)$", text, re.M):
        if line.startswith("~"):
            allow -= expand(line[1:].split(), table)
        else:
            allow |= expand(line.split(), table)
    en = re.search(r"^SystemCallErrorNumber=(\w+)$", text, re.M)
    err = getattr(errno, en.group(1)) if en else errno.EPERM
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(err))
    fams = re.search(r"^RestrictAddressFamilies=(.*)$", text, re.M)
    if fams:
        allow -= {"socket", "socketpair"}  # by family below
    mdwe = re.search(r"^MemoryDenyWriteExecute=yes$", text, re.M)
    if mdwe:
        allow -= {"mmap", "mprotect", "pkey_mprotect"}  # by protection below
    n = 0
    for name in sorted(allow):
        try:
            f.add_rule(seccomp.ALLOW, name)
            n += 1
        except (RuntimeError, ValueError, OSError):
            pass  # not a syscall on this architecture
    if fams:
        allowed = {getattr(socket, a) for a in fams.group(1).split()}
        for call in ("socket", "socketpair"):
            for fam in sorted(allowed):
                f.add_rule(seccomp.ALLOW, call, seccomp.Arg(0, seccomp.EQ, fam))
            # Everything else: EAFNOSUPPORT (the default action covers the
            # rest of the syscalls; these need their own errno).
            for fam in range(0, 46):
                if fam not in allowed:
                    f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), call,
                               seccomp.Arg(0, seccomp.EQ, fam))
    if mdwe:
        # Allowed unless both PROT_WRITE and PROT_EXEC are asked for; that
        # combination falls to the default action (EPERM).
        wx = 0x2 | 0x4
        for call in ("mmap", "mprotect", "pkey_mprotect"):
            for prot in (0, 0x2, 0x4):
                try:
                    f.add_rule(seccomp.ALLOW, call, seccomp.Arg(2, seccomp.MASKED_EQ, wx, prot))
                except (RuntimeError, ValueError, OSError):
                    pass
    print(f"seccomp_exec: {n} syscalls allowed, default errno {err}"
          + (f", families {fams.group(1)}" if fams else ""), file=sys.stderr, flush=True)
    f.load()
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
