"""Native preloads: --preload entries and the caller's LD_PRELOAD, as the children will get them.

The launcher puts its preloads first, then the caller's LD_PRELOAD.  Each
entry must resolve to an ELF library of the interpreter's class and machine;
the ASan runtime must come first in the combined list (the loader aborts
otherwise); two allocators cannot both serve malloc; and `ld.so --list
--preload LIST <python>` must resolve the list against each interpreter.
"""

from __future__ import annotations

import os
import re
import sys

from launcher import preload
from launcher.doctor.models import Finding, fail, ok
from launcher.errors import UsageError
from launcher.probe import Interpreter


def _launcher_arch() -> tuple[int, str]:
    return (64 if sys.maxsize > 2**32 else 32), os.uname().machine


def preload_findings(names: list[str], environ: dict[str, str], interps: list[Interpreter]) -> list[Finding]:
    user = [x for x in re.split(r"[:\s]+", environ.get("LD_PRELOAD", "")) if x]
    if not names and not user:
        return []
    archs = list(dict.fromkeys((i.pointer_bits, i.machine) for i in interps)) or [_launcher_arch()]
    out: list[Finding] = []
    ours: list[preload.Library] = []
    unresolved = False
    for name in names:
        lib = _resolve(name, archs, out, source="--preload")
        if lib is None:
            unresolved = True
        elif all(os.path.realpath(lib.path) != os.path.realpath(x.path) for x in ours):
            ours.append(lib)
    ours = [x for x in ours if x.is_asan] + [x for x in ours if not x.is_asan]
    # (as written, as resolved): the caller's entries are shown the way they wrote them.
    theirs: list[tuple[str, str]] = []
    for entry in user:
        if "$" in entry:  # $LIB / $PLATFORM: the loader expands them, we cannot
            theirs.append((entry, entry))
            continue
        lib = _resolve(entry, archs, out, source="LD_PRELOAD")
        if lib is None:
            unresolved = True
        else:
            theirs.append((entry, lib.path))
    effective = [(x.path, x.path) for x in ours] + theirs
    out.extend(_order_checks(effective, ours_count=len(ours)))
    if effective and not unresolved:
        out.extend(_ldso([path for _, path in effective], interps))
    return out


def _resolve(name: str, archs: list[tuple[int, str]], out: list[Finding], *, source: str) -> preload.Library | None:
    lib = None
    for bits, machine in archs:
        try:
            lib = preload.resolve_one(name, bits=bits, machine=machine)
        except UsageError as exc:
            message = exc.message if source == "--preload" else \
                exc.message.replace(f"--preload {name}:", f"LD_PRELOAD entry {name}:")
            fix = exc.fix if source == "--preload" else \
                f"{exc.fix}; or remove it from LD_PRELOAD (the loader ignores it with a warning)"
            out.append(fail("preload", message, fix, name=name, source=source, resolved=None))
            return None
    assert lib is not None
    out.append(ok("preload", f"{name} ({source}) resolves to {lib.path}, {lib.elf.bits}-bit {lib.elf.machine}",
                  name=name, source=source, resolved=lib.path, bits=lib.elf.bits, machine=lib.elf.machine))
    return lib


def _order_checks(effective: list[tuple[str, str]], *, ours_count: int) -> list[Finding]:
    out = []
    names = [shown for shown, _ in effective]
    asan = [i for i, (_, p) in enumerate(effective) if os.path.basename(p).startswith("libasan")]
    if asan and asan[0] > 0:
        lib = names[asan[0]]
        if asan[0] >= ours_count and ours_count:
            fix = (f"drop {lib} from LD_PRELOAD and add --preload asan: the launcher puts the ASan "
                   "runtime first")
        else:
            rest = [n for i, n in enumerate(names) if i != asan[0]]
            fix = f"put it first: LD_PRELOAD={':'.join([lib, *rest])}"
        out.append(fail(
            "preload", f"the ASan runtime {os.path.basename(lib)} comes after "
            f"{os.path.basename(names[0])} in the preload list ({':'.join(names)}): every process it "
            "reaches aborts with 'ASan runtime does not come first in initial library list'", fix,
            order=[p for _, p in effective], asan=effective[asan[0]][1]))
    allocators: dict[str, str] = {}
    for _, p in effective:
        kind = next((a for a in preload.ALLOCATORS if a in os.path.basename(p)), None)
        if kind and os.path.realpath(p) not in allocators.values():
            allocators.setdefault(kind, os.path.realpath(p))
    if len(allocators) > 1:
        both = " and ".join(allocators)
        out.append(fail("preload", f"two allocators are preloaded ({both}): only the first serves malloc, "
                                   "and memory one allocates and the other frees crashes",
                        "preload one allocator (drop the other from --preload or LD_PRELOAD)",
                        allocators=list(allocators.values())))
    sanitizers = {s for _, p in effective for s in preload.SANITIZERS if os.path.basename(p).startswith(s)}
    if len(sanitizers) > 1:
        out.append(fail("preload", f"two sanitizer runtimes are preloaded ({', '.join(sorted(sanitizers))}); "
                                   "both need to come first", "preload one sanitizer runtime per run",
                        sanitizers=sorted(sanitizers)))
    return out


def _ldso(effective: list[str], interps: list[Interpreter]) -> list[Finding]:
    out = []
    exes = [i.executable for i in interps] or [sys.executable]
    for exe in exes:
        good, text = preload.ldso_check(effective, exe)
        shown = ":".join(os.path.basename(p) for p in effective)
        if good:
            out.append(ok("preload", f"ld.so --list --preload {shown} resolves against {exe}",
                          interpreter=exe, preloads=effective))
        else:
            tail = (text.strip().splitlines() or ["no output"])[-1]
            out.append(fail("preload", f"ld.so cannot preload {shown} into {exe}: {tail}",
                            "give the libraries by full path, built for this interpreter's machine",
                            interpreter=exe, preloads=effective, output=text))
    return out
