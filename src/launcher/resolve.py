"""One job, one set of versions: the interpreters a launch knows are resolved together.

uv resolves one interpreter at a time, and the newest release of a package
often lacks wheels for the newest ABIs (cp313t): resolved alone, two ABIs
of one job drift apart.  So each known ABI is resolved (`uv pip compile
--python X`, in parallel: uv is network- and I/O-bound), and where the
versions of a package differ, every ABI is resolved again with the lowest
of them pinned -- the one the most constrained ABI could have.  When every
ABI accepts it, that version is the job's; when one cannot, the package
stays split and one line names it, the version each ABI gets and why ("no
cp313t wheel of splitpkg 2.0").  A few rounds settle what a pin drags along
(its own dependencies).

The outcome is the job's pins, carried in the spec (`Spec.pins`,
`Spec.abi_pins`), so they name the trees (a tree is keyed by exactly what
it holds) and reach the gate's miss path with LAUNCHER_SPEC: a tree built
later for an ABI the launch did not know resolves with the job's pins as
constraints (`for_abi`), or says in the same one-line form which pin that
ABI cannot have.  A resolution is remembered in the cache by what it
answers (requirements, uv configuration, the set of ABIs, build policy), so
only a cold launch, or `--refresh`, runs uv: a warm one never gets here.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from launcher.cache import CacheLayout
from launcher.errors import BuildError, ResolutionError
from launcher.probe import Interpreter
from launcher.spec import Spec

if TYPE_CHECKING:
    from packaging.version import Version

ROUNDS = 4  # unify, then what the unified pins drag along; more never helped in practice
_NO_WHEEL = ("no wheels with a", "has no usable wheels", "building from source is disabled",
             "free-threading compatible ABI tag", "matching Python ABI tag", "matching platform tag")


@dataclass
class JobPins:
    """The answer for a set of ABIs: each one's exact list, the job-wide
    pins, the lines saying where the ABIs could not agree, and the ABIs
    whose resolution failed for another reason (the infrastructure's, or
    the build policy's) with that reason."""

    abi_pins: dict[str, tuple[str, ...]] = field(default_factory=dict)
    pins: tuple[str, ...] = ()
    lines: list[str] = field(default_factory=list)
    failed: dict[str, BuildError] = field(default_factory=dict)

    def apply(self, spec: Spec) -> Spec:
        return replace(spec, pins=self.pins, abi_pins=tuple(sorted(self.abi_pins.items())))


def abi_tag(abi_key: str) -> str:
    """`cp313t-x86_64-linux-gnu-glibc2.36` -> `cp313t`: what a wheel's ABI tag says."""
    return abi_key.split("-", 1)[0]


def versions(pins: Sequence[str]) -> dict[str, str]:
    """`name==version` lines by canonical name (direct references are left out)."""
    from packaging.utils import canonicalize_name

    out: dict[str, str] = {}
    for line in pins:
        name, sep, ver = line.partition("==")
        if sep and ";" not in ver and "@" not in name:
            out[canonicalize_name(name.split("[", 1)[0].strip())] = ver.strip()
    return out


# ---------------------------------------------------------------- one ABI


def compile_for(uv: str, interp: Interpreter, spec: Spec, build: str,
                extra: dict[str, str] | None = None) -> tuple[str, ...]:
    """The exact list uv resolves for `interp` (with `extra` pins as constraints).

    Wheels first, as the installer does: binary-only, then (policy
    "fallback") with source builds only when no wheel answers.  Raises
    ResolutionError when nothing answers (uv's reason), BuildError for
    every other failure.
    """
    proc = _compile(uv, interp, spec, extra or {}, binary_only=build != "always")
    if proc.returncode != 0 and build == "fallback" and _needs_build(proc.stderr):
        proc = _compile(uv, interp, spec, extra or {}, binary_only=False)
    if proc.returncode == 0:
        return tuple(ln.strip() for ln in proc.stdout.splitlines()
                     if ln.strip() and not ln.lstrip().startswith("#"))
    from launcher import uvcall

    what = " ".join(spec.requirements)
    if build == "never" and _needs_build(proc.stderr):
        raise BuildError(
            f"no wheels of {what} for {interp.abi_key}, and build = \"never\" forbids source builds",
            fix="pin a version that publishes wheels for this interpreter, or allow builds with "
                "--build fallback (LAUNCHER_BUILD=fallback)",
        ).with_log(proc.stderr)
    if uvcall.unresolvable(proc):
        raise ResolutionError(f"cannot resolve {what} for {abi_tag(interp.abi_key)}: {uvcall.reason(proc.stderr)}",
                              fix="check the requirement's name, version and index").with_log(proc.stderr)
    raise BuildError(f"resolving {what} failed: {uvcall.reason(proc.stderr)}",
                     fix="run 'launcher doctor' for the installer's full output").with_log(proc.stderr)


def _needs_build(stderr: str) -> bool:
    from launcher import uvcall

    return uvcall.needs_build(stderr) is not None


def _compile(uv: str, interp: Interpreter, spec: Spec, extra: dict[str, str], *,
             binary_only: bool) -> subprocess.CompletedProcess[str]:
    from launcher import uvcall

    cmd = [uv, "pip", "compile", "--python", interp.executable, "--no-header", "--no-annotate", "--quiet"]
    if binary_only:
        cmd.append("--no-build")
    cmd += uvcall.source_args(spec)
    constraints = list(spec.constraints) + [f"{n}=={v}" for n, v in sorted(extra.items())]
    with tempfile.TemporaryDirectory(prefix="launcher-resolve-") as tmp:
        if constraints:
            path = os.path.join(tmp, "constraints.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write("".join(f"{c}\n" for c in constraints))
            cmd += ["--constraint", path]
        cmd.append("-")
        return uvcall.run(cmd, spec, stdin="".join(f"{r}\n" for r in spec.requirements))


def why_not(uv: str, interp: Interpreter, spec: Spec, build: str, name: str, version: str) -> str:
    """Why `interp` cannot have `name==version`, in a few words."""
    try:
        compile_for(uv, interp, spec, build, {name: version})
    except (ResolutionError, BuildError) as exc:
        log = exc.log or ""
        if any(s in log for s in _NO_WHEEL):
            return f"no {abi_tag(interp.abi_key)} wheel of {name} {version}"
        return exc.message.split(": ", 1)[-1]
    return f"{name} {version} resolves for {abi_tag(interp.abi_key)} only without the job's other pins"


def split_line(name: str, got: dict[str, str], why: list[str]) -> str:
    """The one line for a package the ABIs of a job cannot agree on."""
    each = ", ".join(f"{abi_tag(abi)} gets {ver}" for abi, ver in sorted(got.items()))
    return f"{name} differs between the job's interpreters: {each} ({'; '.join(dict.fromkeys(why))})"


# ---------------------------------------------------------------- the job


def resolve_job(uv: str, interps: Sequence[Interpreter], spec: Spec, build: str) -> JobPins:
    """Resolve every ABI of the job together (see the module's docstring)."""
    by_abi = {i.abi_key: i for i in interps}
    out = JobPins()

    def each(extra: dict[str, str], abis: Sequence[str]) -> dict[str, tuple[str, ...] | Exception]:
        def one(abi: str) -> tuple[str, ...] | Exception:
            # An ABI that already has every pinned version keeps its answer:
            # pinning what it chose changes nothing (one round of uv saved).
            held = answers.get(abi)
            if held is not None and extra and all(versions(held).get(n, v) == v for n, v in extra.items()):
                return held
            try:
                return compile_for(uv, by_abi[abi], spec, build, extra)
            except (ResolutionError, BuildError) as exc:
                return exc
        with ThreadPoolExecutor(max_workers=min(4, len(abis)) or 1) as pool:
            return dict(zip(abis, pool.map(one, abis), strict=True))

    answers: dict[str, tuple[str, ...]] = {}

    first = each({}, list(by_abi))
    for abi, got in first.items():
        if isinstance(got, ResolutionError):
            raise got  # nothing answers the requirements: the job stops
        if isinstance(got, BuildError):
            out.failed[abi] = got
    answers = {abi: got for abi, got in first.items() if isinstance(got, tuple)}
    forced: dict[str, str] = {}
    split: set[str] = set()
    for _ in range(ROUNDS):
        differ = _differing(answers, split)
        if not differ:
            break
        want = {n: _lowest(vs.values()) for n, vs in differ.items()}
        trial = each({**forced, **want}, list(answers))
        if all(isinstance(v, tuple) for v in trial.values()):
            forced.update(want)
            answers = trial  # type: ignore[assignment]
            continue
        for n, v in want.items():  # one at a time: which of them cannot be had everywhere?
            trial = each({**forced, n: v}, list(answers))
            if all(isinstance(t, tuple) for t in trial.values()):
                forced[n] = v
                answers = trial  # type: ignore[assignment]
            else:
                split.add(n)
    for n in sorted(split | set(_differing(answers, set()))):
        each_abi = {abi: versions(p)[n] for abi, p in answers.items() if n in versions(p)}
        high = max(each_abi.values(), key=_key)
        why = [why_not(uv, by_abi[abi], spec, build, n, high) for abi, v in sorted(each_abi.items()) if v != high]
        out.lines.append(split_line(n, each_abi, why))
    out.abi_pins = answers
    out.pins = _job_wide(answers)
    return out


def _differing(answers: dict[str, tuple[str, ...]], split: set[str]) -> dict[str, dict[str, str]]:
    seen: dict[str, dict[str, str]] = {}
    for abi, pins in answers.items():
        for n, v in versions(pins).items():
            seen.setdefault(n, {})[abi] = v
    return {n: vs for n, vs in seen.items() if n not in split and len(set(vs.values())) > 1}


def _key(v: str) -> tuple[int, Version, str]:
    from packaging.version import InvalidVersion
    from packaging.version import Version as V

    try:
        return (1, V(v), "")
    except InvalidVersion:
        return (0, V("0"), v)


def _lowest(vs: Iterable[str]) -> str:
    return min(vs, key=_key)


def _job_wide(answers: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """One pin per package for ABIs met later: the agreed version, or the
    lowest where the known ABIs stayed split (the likeliest to have wheels)."""
    seen: dict[str, list[str]] = {}
    for pins in answers.values():
        for n, v in versions(pins).items():
            seen.setdefault(n, []).append(v)
    return tuple(f"{n}=={_lowest(vs)}" for n, vs in sorted(seen.items()))


# ---------------------------------------------------------------- an ABI met later


def for_abi(uv: str, interp: Interpreter, spec: Spec, build: str,
            say: Callable[[str], None] | None = None) -> tuple[str, ...]:
    """The exact list for an ABI the launch did not know: the job's pins as
    constraints; where that ABI cannot have one, the version it can have,
    said in one line per package."""
    exact = spec.pinned_for(interp.abi_key)
    if exact is not None or not spec.pins:
        return exact if exact is not None else compile_for(uv, interp, spec, build)
    job = versions(spec.pins)
    try:
        return compile_for(uv, interp, spec, build, job)
    except ResolutionError:
        pass  # some pin cannot be had here: find which
    own = compile_for(uv, interp, spec, build)
    mine = versions(own)
    kept = {n: v for n, v in job.items() if mine.get(n, v) == v}
    try:
        exact = compile_for(uv, interp, spec, build, kept)
    except ResolutionError:
        exact = own
    got = versions(exact)
    for n, v in sorted(job.items()):
        if n in got and got[n] != v and say is not None:
            say(split_line(n, {interp.abi_key: got[n], "job": v},
                           [why_not(uv, interp, spec, build, n, v)]).replace("job gets", "the job pins"))
    return exact


# ---------------------------------------------------------------- remembered answers


def _memo_name(spec: Spec, abi_keys: Sequence[str], build: str) -> str:
    doc = {"spec": spec.base.hash, "abis": sorted(set(abi_keys)), "build": build}
    return f"pins-{hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]}.json"


def remembered(layout: CacheLayout, spec: Spec, abi_keys: Sequence[str], build: str) -> JobPins | None:
    """The remembered answer for exactly these ABIs, else the newest one for
    more of them (a prewarm or lock of the whole job, then a run of one of
    its interpreters: the same pins, the same trees)."""
    exact = _load(layout, _memo_name(spec, abi_keys, build))
    if exact is not None:
        return exact[1]
    wanted, best = set(abi_keys), None
    try:
        names = [n for n in os.listdir(layout.specs) if n.startswith("pins-") and n.endswith(".json")]
    except OSError:
        return None
    for name in names:
        found = _load(layout, name)
        if found is None:
            continue
        (base, abis, policy, mtime), answer = found
        if base == spec.base.hash and policy == build and wanted <= set(abis) \
                and (best is None or mtime > best[0]):
            best = (mtime, answer)
    return best[1] if best is not None else None


def _load(layout: CacheLayout, name: str) -> tuple[tuple[str, list[str], str, int], JobPins] | None:
    """A remembered answer in specs/, read as every cache file is (a private
    file of ours, through checked directories, never through a link)."""
    from launcher.cache import safety

    raw = safety.read_file(layout.root, "specs", name)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        answer = JobPins(abi_pins={k: tuple(v) for k, v in data["abi_pins"].items()},
                         pins=tuple(data["pins"]), lines=list(data["lines"]))
        return (str(data.get("spec")), list(data.get("abis", [])), str(data.get("build")),
                int(data.get("at", 0))), answer
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def remember(layout: CacheLayout, spec: Spec, abi_keys: Sequence[str], build: str, answer: JobPins) -> None:
    """Best effort: a cache that cannot take it resolves again next time."""
    if answer.failed:
        return  # incomplete: the next launch tries the failed ABIs again
    from launcher.cache import safety

    data = {"abi_pins": {k: list(v) for k, v in answer.abi_pins.items()}, "pins": list(answer.pins),
            "lines": answer.lines, "spec": spec.base.hash, "abis": sorted(set(abi_keys)), "build": build,
            "at": time.time_ns()}
    try:
        safety.write_file(layout.root, "specs", _memo_name(spec, abi_keys, build),
                          json.dumps(data, indent=1, sort_keys=True).encode())
    except (OSError, safety.UntrustedCache):
        pass


def forget(layout: CacheLayout, spec: Spec, abi_keys: Sequence[str], build: str) -> None:
    from launcher.cache import safety

    try:
        with safety.opened(layout.root, "specs") as fd:
            os.unlink(_memo_name(spec, abi_keys, build), dir_fd=fd)
    except (OSError, safety.UntrustedCache):
        pass
