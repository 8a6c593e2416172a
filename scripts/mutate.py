"""`make mutate`: does the suite fail when a promise breaks?

Each mutation in tests/mutations.toml is a one-line change to src/ that
breaks one documented promise.  For each: apply it in place (the editable
install and the gate copies read src/ directly), run its targeted tests
fail-fast; if they pass, run the whole suite fail-fast; restore the file.
A mutation some test fails on is *killed*; one the suite passes with
*survived* -- a promise nothing guards.

Snippets are matched by text, not line number, and must occur exactly once
in their file, so unrelated edits elsewhere do not disturb them; a snippet
that no longer matches is reported as *stale* (fix the list, not the code).

The original file is always put back: try/finally, SIGINT/SIGTERM turned
into an exception, and a backup beside the file (.mutate-backup) that the
next run restores first if this one was killed outright.  Bytecode of the
mutated file is removed after applying and after restoring, so a .pyc of
the mutant (same size, same second) can never be taken for the original.

First, a control run: the targeted tests must pass on the code as it is,
or every mutation would look killed.

Exit status: 0 when every mutation was killed, 1 when any survived or is
stale, 2 on a usage error or a failing control run.  Not part of CI: each mutation runs pytest.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import tomllib

REPO = Path(__file__).resolve().parent.parent
LIST = REPO / "tests" / "mutations.toml"
BACKUP_SUFFIX = ".mutate-backup"


@dataclass
class Mutation:
    id: str
    file: str
    original: str
    replacement: str
    promise: str
    tests: list[str]
    result: str = ""  # "killed" | "survived" | "stale"
    killed_by: str = ""
    seconds: float = 0.0
    detail: list[str] = field(default_factory=list)


def load(path: Path) -> list[Mutation]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    out = []
    for i, m in enumerate(data.get("mutation", [])):
        missing = [k for k in ("id", "file", "original", "replacement", "promise", "tests") if k not in m]
        if missing:
            raise SystemExit(f"mutate: {path}: mutation #{i + 1} lacks {', '.join(missing)}")
        out.append(Mutation(m["id"], m["file"], m["original"], m["replacement"], m["promise"], list(m["tests"])))
    ids = [m.id for m in out]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise SystemExit(f"mutate: {path}: duplicate ids {', '.join(dupes)}")
    return out


def _drop_bytecode(src: Path) -> None:
    cache = src.parent / "__pycache__"
    if cache.is_dir():
        for pyc in cache.glob(f"{src.stem}.*.pyc"):
            pyc.unlink(missing_ok=True)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def recover() -> None:
    """Put back any file a killed earlier run left mutated."""
    for backup in (REPO / "src").rglob(f"*{BACKUP_SUFFIX}"):
        target = backup.with_name(backup.name[: -len(BACKUP_SUFFIX)])
        os.replace(backup, target)
        _drop_bytecode(target)
        print(f"mutate: restored {target.relative_to(REPO)} left mutated by an interrupted run", file=sys.stderr)


class Applied:
    """The mutation in place for the duration of a `with` block, restored whatever happens."""

    def __init__(self, path: Path, original: bytes, mutated: bytes) -> None:
        self.path, self.original, self.mutated = path, original, mutated
        self.backup = path.with_name(path.name + BACKUP_SUFFIX)
        self.stat = path.stat()

    def __enter__(self) -> Applied:
        self.backup.write_bytes(self.original)
        os.utime(self.backup, ns=(self.stat.st_atime_ns, self.stat.st_mtime_ns))
        self.path.write_bytes(self.mutated)
        _drop_bytecode(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        # Signals stay blocked while the file is put back: a second Ctrl-C
        # must not leave the mutant behind.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self.path.write_bytes(self.original)
            os.utime(self.path, ns=(self.stat.st_atime_ns, self.stat.st_mtime_ns))
            _drop_bytecode(self.path)
            self.backup.unlink(missing_ok=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def pytest(args: list[str], timeout: float) -> tuple[bool, str]:
    """(passed, the first failing test id or the tail of the output)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s (counted as killed: the suite did not pass)"
    if proc.returncode == 0:
        return True, ""
    lines = proc.stdout.splitlines()
    failed = [ln.split(" ", 1)[1].split(" - ", 1)[0] for ln in lines if ln.startswith(("FAILED ", "ERROR "))]
    if proc.returncode not in (1, 2) or not failed:
        return False, f"pytest exit {proc.returncode}: " + " | ".join(proc.stdout.strip().splitlines()[-3:])
    # The first line of the failure itself, so a kill can be told from a broken set-up.
    why = next((ln[1:].strip() for ln in lines if ln.startswith("E ")), "")
    return False, failed[0] + (f"\n          {why[:160]}" if why else "")


def run_one(m: Mutation, *, full: bool, timeout: float) -> None:
    start = time.monotonic()
    path = REPO / m.file
    try:
        text = path.read_bytes()
    except OSError as exc:
        m.result, m.killed_by = "stale", f"cannot read {m.file}: {exc.strerror}"
        return
    count = text.count(m.original.encode())
    if count != 1:
        m.result, m.killed_by = "stale", f"the snippet occurs {count} times in {m.file} (must be exactly once)"
        return
    mutated = text.replace(m.original.encode(), m.replacement.encode())
    if path.suffix == ".py":
        try:
            compile(mutated, str(path), "exec")
        except SyntaxError as exc:
            # A file that no longer parses fails every test for the wrong
            # reason: that is a broken entry, not a kill.
            m.result, m.killed_by = "stale", f"the mutated {m.file} does not compile ({exc.msg}, line {exc.lineno})"
            return
    with Applied(path, text, mutated):
        passed, why = pytest(m.tests, timeout)
        if passed and full:
            passed, why = pytest([], timeout * 4)
            why = f"{why} (full suite)" if why else why
    m.seconds = time.monotonic() - start
    m.result, m.killed_by = ("survived", "no test failed") if passed else ("killed", why)


def control(mutations: list[Mutation], timeout: float) -> bool:
    """The targeted tests pass on the code as it is: otherwise every mutation
    would look killed by a failure it did not cause."""
    targets = list(dict.fromkeys(t for m in mutations for t in m.tests))
    print(f"mutate: control run, no mutation: {len(targets)} targeted test selection(s)", file=sys.stderr,
          flush=True)
    passed, why = pytest(targets, timeout * 2)
    if not passed:
        print(f"mutate: the targeted tests fail without any mutation ({why}): fix that first", file=sys.stderr)
    return passed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", type=Path, default=LIST, help=f"the mutations (default {LIST.relative_to(REPO)})")
    ap.add_argument("--only", action="append", metavar="ID", help="run only this mutation (repeatable)")
    ap.add_argument("--no-full", action="store_true",
                    help="do not fall back to the whole suite when the targeted tests pass")
    ap.add_argument("--check", action="store_true", help="only check that every snippet still applies")
    ap.add_argument("--no-control", action="store_true",
                    help="skip the first run of the targeted tests on the unmutated code")
    ap.add_argument("--timeout", type=float, default=900, help="seconds for one targeted pytest run")
    args = ap.parse_args(argv)
    mutations = load(args.list)
    if args.only:
        unknown = sorted(set(args.only) - {m.id for m in mutations})
        if unknown:
            ap.error(f"unknown mutation {', '.join(unknown)}")
        mutations = [m for m in mutations if m.id in args.only]
    recover()
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        if not args.check and not args.no_control and not control(mutations, args.timeout):
            return 2
        for i, m in enumerate(mutations, 1):
            if args.check:
                n = (REPO / m.file).read_text(encoding="utf-8").count(m.original)
                m.result = "applies" if n == 1 else "stale"
                m.killed_by = "" if n == 1 else f"the snippet occurs {n} times in {m.file}"
            else:
                print(f"mutate: [{i}/{len(mutations)}] {m.id} ({m.file}): {' '.join(map(shlex.quote, m.tests))}",
                      file=sys.stderr, flush=True)
                run_one(m, full=not args.no_full, timeout=args.timeout)
            print(f"{m.result.upper():9} {m.id}: {m.killed_by}" + (f" [{m.seconds:.0f} s]" if m.seconds else ""),
                  flush=True)
    except KeyboardInterrupt:
        print("mutate: interrupted; every file is restored", file=sys.stderr)
        return 130
    bad = [m for m in mutations if m.result not in ("killed", "applies")]
    counts = {r: sum(m.result == r for m in mutations) for r in ("killed", "survived", "stale", "applies")}
    print("mutate: " + ", ".join(f"{n} {r}" for r, n in counts.items() if n) + f" of {len(mutations)}")
    for m in bad:
        print(f"mutate: {m.result}: {m.id} -- breaks: {m.promise}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
