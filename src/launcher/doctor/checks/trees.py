"""Runtime trees: present, missing or invalid; remembered failed builds and their error.

Everything comes from `launcher.tree` (the manifest, `verified`, the
extension validation, the failure records); doctor never builds.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

from launcher.cache import CacheLayout, safety
from launcher.doctor.context import abi_tag
from launcher.doctor.models import Finding, fail, ok, warn
from launcher.probe import Interpreter
from launcher.spec import Spec
from launcher.tree import MANIFEST, Failure, foreign_extensions, last_failure, verified
from launcher.words import plural

LOG_LINES = 8


def tree_findings(layout: CacheLayout, interp: Interpreter, spec: Spec, failure_ttl: float) -> list[Finding]:
    target = layout.tree(interp.abi_key, spec.hash)
    reqs = " ".join(spec.requirements)
    facts: dict[str, Any] = {"tree": str(target), "abi_key": interp.abi_key, "spec_hash": spec.hash,
             "requirements": list(spec.requirements)}
    odd = safety.dir_problem(target)
    if odd is not None:
        return [fail("tree", f"{odd.path} {odd.what}", odd.fix, state="odd", **facts)]
    if (target / MANIFEST).exists():
        manifest, problem = verified(target)
        if manifest is None:
            return [warn("tree", f"runtime tree {target.name} is invalid ({problem}); the next "
                                 "launcher run rebuilds it", f"nothing to do, or rebuild it now: rm -rf {target}",
                         problem=problem, state="invalid", **facts)]
        bad = foreign_extensions(target, interp)
        if bad:
            rel, why = bad[0]
            return [fail("tree", f"runtime tree {target.name} holds {plural(len(bad), 'extension module')} "
                                 f"{abi_tag(interp)} cannot import, e.g. {rel} ({why})",
                         f"rm -rf {target}, then pin versions that publish wheels for {abi_tag(interp)}",
                         state="foreign", files=[b[0] for b in bad], **facts)]
        dists = ", ".join(f"{d.name} {d.version}" for d in manifest.distributions)
        return [ok("tree", f"runtime tree for {reqs} is present and valid ({dists or 'no packages'})",
                   state="present", built_at=manifest.built_at, uv_version=manifest.uv_version, **facts)]
    if target.exists():
        return [warn("tree", f"{target} has no manifest (an interrupted publish); the next launcher run "
                             "replaces it", f"nothing to do, or rm -rf {target}", state="invalid", **facts)]
    failure = last_failure(layout, interp.abi_key, spec.hash)
    if failure is not None:
        return [failure_finding(layout, failure, failure_ttl, spec)]
    return [warn("tree", f"no runtime tree yet for {reqs} on {interp.abi_key}: the first launcher run "
                         "builds it while the command waits",
                 f"build it ahead: launcher run {_options(spec)} -- {shlex.quote(interp.executable)} -c pass",
                 state="missing", **facts)]


def _options(spec: Spec) -> str:
    out = [f"--with {shlex.quote(r)}" for r in spec.requirements]
    out += [f"--find-links {shlex.quote(x)}" for x in spec.find_links]
    if spec.index_url:
        out.append(f"--index-url {shlex.quote(spec.index_url)}")
    if spec.offline:
        out.append("--offline")
    return " ".join(out)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def failure_finding(layout: CacheLayout, failure: Failure, ttl: float, spec: Spec | None = None,
                    job: Spec | None = None) -> Finding:
    """A remembered failed build: what failed, why, and how to retry.  With
    `job` (the requirement set doctor is asked about), a failure of another
    set is history: it stops nothing this job runs."""
    if spec is None:
        try:
            spec = Spec.load(layout, failure.spec_hash)
        except Exception:
            spec = None
    ago = time.time() - failure.at
    record = layout.failure(failure.abi_key, failure.spec_hash)
    low = failure.error.lower()
    if "not found" in low or "no solution" in low or "unsatisfiable" in low:
        cause = ("check the requirement names and versions, and that --find-links/--index-url offer a "
                 f"wheel for {failure.abi_key.split('-')[0]}")
    elif "forbids source builds" in low:
        cause = (f"pin a version that publishes wheels for {failure.abi_key.split('-')[0]}, or allow "
                 "builds with --build fallback (LAUNCHER_BUILD=fallback)")
    elif "cannot import" in low:
        cause = f"pin versions that publish wheels for {failure.abi_key.split('-')[0]}"
    else:
        cause = "fix the cause shown in the installer's output"
    log = [ln for ln in failure.log.strip().splitlines() if ln.strip()][-LOG_LINES:]
    facts: dict[str, Any] = {
        "abi_key": failure.abi_key, "spec_hash": failure.spec_hash, "interpreter": failure.interpreter,
        "error": failure.error, "at": failure.at, "expired": ago >= ttl,
        "requirements": list(spec.requirements) if spec else None, "log": failure.log,
        "record": str(record)}
    if job is not None and failure.spec_hash != job.hash:
        other = " ".join(spec.requirements) if spec else f"requirement set {failure.spec_hash}"
        return ok("failure", f"history: a build of the runtime for {failure.abi_key} with another requirement "
                             f"set ({other}) failed {_ago(ago)} ago ({failure.error}); it does not affect "
                             "this job", other_requirement_set=True, **facts)
    if ago >= ttl:
        # Past its TTL the record no longer stops anything (the next run
        # retries): history worth a line, not a failing setup.
        return ok("failure", f"history: a build of the runtime for {failure.abi_key} "
                             f"({failure.interpreter}) failed {_ago(ago)} ago ({failure.error}); the "
                             "record has expired, so the next launcher run retries "
                             "('launcher cache prune' removes it)", **facts)
    retry = f"launcher run retries after {ttl - ago:.0f}s, or at once with 'launcher run --refresh'"
    return fail("failure", f"the last build of the runtime for {failure.abi_key} ({failure.interpreter}) "
                           f"failed {_ago(ago)} ago: {failure.error}",
                f"{cause}; {retry}", details=log, **facts)


def cache_tree_findings(layout: CacheLayout, skip: set[str]) -> list[Finding]:
    """Every tree in the cache (`skip`: names checked per interpreter already): the
    cheap check (`launcher cache verify` is the deep one)."""
    try:
        entries = [layout.trees / n for n in layout.tree_names()]
    except OSError:
        return []  # reported by the cache check (as is trees/ not being a real directory)
    out: list[Finding] = [fail("tree", f"{p} is {'a symlink' if p.is_symlink() else 'not a directory'} where "
                                       "a runtime tree should be; launcher never follows or uses it",
                               f"rm {p} (the next launcher run that needs it builds a real one)",
                               tree=str(p), state="odd")
                          for p in entries if not safety.real_dir(p)]
    out += _odd_stamps(layout)
    trees = [p for p in entries if safety.real_dir(p)]
    size = 0
    for tree in trees:
        manifest, problem = verified(tree) if (tree / MANIFEST).exists() else (None, "no manifest")
        if manifest is not None:
            size += sum(f.size for f in manifest.files)
        elif tree.name not in skip:  # else reported under its interpreter
            out.append(warn("tree", f"runtime tree {tree.name} is invalid ({problem}); the next run that "
                                    "needs it rebuilds it", f"nothing to do, or rm -rf {tree}",
                            tree=str(tree), problem=problem, state="invalid"))
    if not trees and not out:
        out.append(ok("tree", "no runtime trees in the cache yet", trees=0, bytes=0))
    elif not out:
        out.append(ok("tree", f"{plural(len(trees), 'runtime tree')} in the cache, {size / 1e6:.1f} MB, pass the cheap "
                              "check (sizes, mtimes, no file added or missing); 'launcher cache verify' hashes "
                              "every file", trees=len(trees), bytes=size))
    return out


def _odd_stamps(layout: CacheLayout) -> list[Finding]:
    """Use stamps are plain files; anything else in used/ is named."""
    if not safety.real_dir(layout.used):
        return []
    return [fail("cache", f"{p} is a directory where a use stamp should be; launcher leaves it alone",
                 f"rm -r {p}", path=str(p))
            for p in sorted(layout.used.iterdir()) if safety.real_dir(p)]


def remembered_failures(layout: CacheLayout, skip: set[Path], ttl: float, job: Spec | None = None) -> list[Finding]:
    """Every failure record not reported under an interpreter; `job`: see `failure_finding`."""
    out: list[Finding] = []
    if not safety.real_dir(layout.failures):
        return out  # a link there is reported by the cache check, never read through
    try:
        records = sorted(layout.failures.glob("*.json"))
    except OSError:
        return out
    for path in records:
        if path in skip:
            continue
        try:
            failure = Failure.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            out.append(warn("failure", f"unreadable failure record {path}", f"rm {path}", record=str(path)))
            continue
        if (layout.tree(failure.abi_key, failure.spec_hash) / MANIFEST).exists():
            continue  # built since
        out.append(failure_finding(layout, failure, ttl, job=job))
    return out


def shadowed_findings(interp: Interpreter, spec: Spec) -> list[Finding]:
    """With priority "last" the interpreter's own packages win: say when one
    of them does not satisfy the requirement it hides."""
    from launcher.shadow import shadowed

    return [warn("tree", sh.line(interp), "launcher run --with-priority first ... (or "
                                          "with-priority = \"first\" in [tool.launcher]), or upgrade "
                                          f"{sh.name} in {sh.where}",
                 requirement=sh.requirement, installed=sh.version, where=sh.where, state="shadowed")
            for sh in shadowed(interp, spec.requirements)]
