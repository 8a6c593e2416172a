"""How the launcher calls uv: the options every call shares, and reading uv's failures.

What is passed (the README lists it too): `--find-links` and `--index-url`
as given to the launcher, `--offline` for `--offline` (uv's meaning: no
network, the cache and local files only), `--no-config` only under
`--isolated`.  Nothing else: uv's own configuration (uv.toml, `[tool.uv]`,
`UV_*`) is the user's.  uv runs in the launch's working directory, so it
discovers the same project configuration wherever the tree is built.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence

from launcher.spec import Spec

# uv's words when only a source build would satisfy the requirements.
NEEDS_BUILD = ("building from source is disabled", "has no usable wheels", "no wheels with a matching")
NEEDS_BUILD_FOR = re.compile(r"Wheels are required for `([^`]+)`")
# A resolution that has no answer (uv exits 1): no such project, no such
# version, conflicting pins.  Anything else (exit 2: an unreachable index, a
# full disk, a missing compiler) is the infrastructure's.
NO_SOLUTION = "No solution found when resolving"


def source_args(spec: Spec) -> list[str]:
    out: list[str] = []
    if spec.isolated:
        out.append("--no-config")
    for link in spec.find_links:
        out += ["--find-links", link]
    if spec.index_url:
        out += ["--index-url", spec.index_url]
    if spec.offline:
        out.append("--offline")
    return out


def workdir(spec: Spec) -> str | None:
    """Where uv runs (and discovers its configuration): the launch's directory, while it exists."""
    return spec.workdir if spec.workdir and os.path.isdir(spec.workdir) else None


def run(cmd: Sequence[str], spec: Spec, *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    from launcher.gate._launcher_miss import scrubbed_env

    return subprocess.run(list(cmd), env=scrubbed_env(os.environ), cwd=workdir(spec), capture_output=True,
                          encoding="utf-8", errors="replace",
                          **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}))


def needs_build(stderr: str) -> list[str] | None:
    """The packages uv could only have built from source, or None (another failure)."""
    if not any(s in stderr for s in NEEDS_BUILD):
        return None
    return list(dict.fromkeys(NEEDS_BUILD_FOR.findall(stderr)))


def unresolvable(proc: subprocess.CompletedProcess[str]) -> bool:
    return proc.returncode == 1 and NO_SOLUTION in proc.stderr


def reason(stderr: str) -> str:
    """uv's own reason, on one line: the first cause it gives (else its last line)."""
    lines = [ln.strip().lstrip("×").strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("cause:") and "Because" in ln:
            return ln.removeprefix("cause:").strip()
    for ln in lines:
        if ln.startswith("Because") or "not found" in ln:
            return ln
    causes = [ln.removeprefix("cause:").strip() for ln in lines if ln.startswith("cause:")]
    if causes:
        head = lines[0].removeprefix("error:").strip()
        return f"{head}: {causes[-1]}"
    return lines[-1].removeprefix("error:").strip() if lines else "no output"
