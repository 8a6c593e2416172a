"""Native preloads: resolve names to libraries, check them, order them.

Resolution follows the dynamic loader's search (ldconfig cache, then the
standard directories); anything wrong -- not found, wrong ELF class or
machine, two allocators or two sanitizer runtimes -- is an error before
anything runs.  The ASan runtime always comes first: the loader refuses it
anywhere else ("ASan runtime does not come first in initial library list").
"""

from __future__ import annotations

import functools
import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from launcher.errors import UsageError

SHORT_NAMES: dict[str, tuple[str, ...]] = {
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so"),
    "tcmalloc": ("libtcmalloc.so.4", "libtcmalloc_minimal.so.4", "libtcmalloc.so"),
    "tcmalloc_minimal": ("libtcmalloc_minimal.so.4",),
    "asan": ("libasan.so.8", "libasan.so.6", "libasan.so.5", "libasan.so"),
}
ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")
SANITIZERS = ("libasan", "libtsan", "libmsan", "libhwasan")
STANDARD_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
                 "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
                 "/usr/local/lib")
EM_NAMES = {3: "i386", 62: "x86_64", 183: "aarch64", 40: "arm", 243: "riscv64", 21: "ppc64"}
MACHINE_EM = {"x86_64": 62, "aarch64": 183, "i686": 3, "i386": 3, "armv7l": 40,
              "riscv64": 243, "ppc64le": 21}
APT_HINT = {"jemalloc": "apt-get install libjemalloc2", "tcmalloc": "apt-get install libtcmalloc-minimal4",
            "asan": "apt-get install libasan8 (it comes with gcc)"}


@dataclass(frozen=True)
class ElfInfo:
    bits: int
    machine: str


@dataclass(frozen=True)
class Library:
    requested: str
    path: str
    elf: ElfInfo

    @property
    def is_asan(self) -> bool:
        return os.path.basename(self.path).startswith("libasan")

    @property
    def allocator(self) -> str | None:
        base = os.path.basename(self.path)
        return next((a for a in ALLOCATORS if a in base), None)

    @property
    def sanitizer(self) -> str | None:
        base = os.path.basename(self.path)
        return next((s for s in SANITIZERS if base.startswith(s)), None)


def elf_info(path: str) -> ElfInfo | None:
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    bits = 64 if head[4] == 2 else 32
    end = "<" if head[5] == 1 else ">"
    (em,) = struct.unpack(end + "H", head[18:20])
    return ElfInfo(bits=bits, machine=EM_NAMES.get(em, f"machine {em}"))


@functools.cache
def _ldconfig_cache() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for exe in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            text = subprocess.run([exe, "-p"], capture_output=True, text=True, encoding="utf-8",
                                  errors="replace", timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in text.splitlines()[1:]:
            name, _, rest = line.strip().partition(" (")
            path = rest.rpartition("=> ")[2].strip()
            if name and path:
                out.setdefault(name, []).append(path)
        break
    return out


def _search(soname: str) -> list[str]:
    found = list(_ldconfig_cache().get(soname, []))
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d] + list(STANDARD_DIRS)
    for d in dirs:
        p = os.path.join(d, soname)
        if os.path.isfile(p) and p not in found:
            found.append(p)
    return found


def resolve_one(name: str, *, bits: int = 64, machine: str = "x86_64") -> Library:
    """A path, a soname or a short name -> a checked library."""
    candidates: list[str]
    if "/" in name:
        if not os.path.isfile(name):
            raise UsageError(f"--preload {name}: no such file", fix="give an existing path, a soname "
                             "like libjemalloc.so.2, or a short name (jemalloc, tcmalloc, asan)")
        candidates = [name]
    else:
        sonames = SHORT_NAMES.get(name, (name,))
        candidates = [p for s in sonames for p in _search(s)]
        if not candidates:
            hint = APT_HINT.get(name) or next((h for k, h in APT_HINT.items() if k in name), None)
            raise UsageError(
                f"--preload {name}: not found by the dynamic loader (ldconfig cache, standard dirs)",
                fix=hint or "install it, or give its full path",
            )
    wrong: list[str] = []
    for path in candidates:
        info = elf_info(path)
        if info is None:
            wrong.append(f"{path} is not an ELF shared library")
            continue
        if info.bits != bits or info.machine != machine:
            wrong.append(f"{path} is {info.bits}-bit {info.machine}")
            continue
        return Library(requested=name, path=os.path.abspath(path), elf=info)
    raise UsageError(
        f"--preload {name}: {'; '.join(wrong)}, but the interpreter is {bits}-bit {machine}",
        fix=f"use the {bits}-bit {machine} build of the library",
    )


def resolve(names: list[str], *, bits: int = 64, machine: str = "x86_64") -> list[Library]:
    """Resolve, dedupe and order: the ASan runtime first, then the rest as given."""
    libs: list[Library] = []
    for n in names:
        lib = resolve_one(n, bits=bits, machine=machine)
        if all(os.path.realpath(lib.path) != os.path.realpath(x.path) for x in libs):
            libs.append(lib)
    allocators = [x for x in libs if x.allocator]
    if len(allocators) > 1:
        raise UsageError(
            "two allocators preloaded: " + " and ".join(x.path for x in allocators)
            + " (only the first would ever serve malloc)",
            fix="preload one of them",
        )
    sanitizers = [x for x in libs if x.sanitizer]
    if len(sanitizers) > 1:
        raise UsageError(
            "two sanitizer runtimes cannot both come first: " + " and ".join(x.path for x in sanitizers),
            fix="preload one sanitizer runtime per run",
        )
    return [x for x in libs if x.is_asan] + [x for x in libs if not x.is_asan]


def ldso_path() -> str | None:
    for p in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1", "/lib/ld-linux.so.2"):
        if os.path.exists(p):
            return p
    return None


def ldso_check(libs: list[str], interpreter: str) -> tuple[bool, str]:
    """`ld.so --list --preload LIST <python>`: resolves without running anything."""
    ldso = ldso_path()
    if ldso is None:
        return True, "no ld.so found to check with"
    try:
        proc = subprocess.run([ldso, "--list", "--preload", ":".join(libs), interpreter],
                              capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    text = proc.stdout + proc.stderr
    ok = proc.returncode == 0 and all(Path(x).name in text for x in libs)
    return ok, text.strip()
