"""The report `launcher doctor` produces, and the schema of `--json`.

The JSON output is `Report.model_dump_json()`; tools reading it can validate
it with `Report.model_validate_json()` or the JSON Schema from
`report_schema()` (`launcher doctor --schema`).  `schema_version` changes
only when a field is removed or changes meaning; new fields and new `check`
names may be added within a version.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

SCHEMA_VERSION: Literal[1] = 1

Status = Literal["ok", "warn", "fail"]
Check = Literal[
    "launcher",     # the launcher itself, its interpreter, the machine
    "settings",     # config files, LAUNCHER_* variables, flags
    "installer",    # uv: found, runs, its version
    "cache",        # cache dir: exists, owner, permissions, free space, filesystem
    "lock",         # build locks held or left behind
    "temp",         # temp dirs left by killed installs
    "failure",      # a remembered failed build
    "tree",         # a runtime tree: present / missing / invalid / foreign extensions
    "command",      # what the command is and which interpreter it runs
    "interpreter",  # identity of an interpreter
    "environment",  # ABI scan of site-packages and PYTHONPATH; PYTHON* variables
    "startup",      # start-up injection: sitecustomize chaining, -E/-I/-S
    "preload",      # native preloads
    "record",       # run records: the latest, and 'launcher runs show'
]
GroupKind = Literal["launcher", "cache", "command", "environment", "preloads", "interpreter"]
_RANK = {"ok": 0, "warn": 1, "fail": 2}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Finding(_Model):
    """One thing doctor checked: a status, a one-line reason and, unless ok, a fix."""

    check: Check
    status: Status
    message: str = Field(description="One line: what was found and why it matters.")
    fix: str | None = Field(default=None, description="One line: the command or change that fixes it.")
    facts: dict[str, JsonValue] = Field(default_factory=dict,
                                        description="Machine-readable details (keys per check).")
    details: list[str] = Field(default_factory=list,
                               description="Extra lines for people (e.g. the installer's last output).")


class InterpreterFacts(_Model):
    """Who an interpreter is, ABI-wise, and why doctor looked at it."""

    path: str
    origin: str = Field(description="Why it is checked: --python, argv[0], the shebang of a script, ...")
    realpath: str | None = None
    implementation: str | None = None
    version: str | None = None
    abi_key: str | None = Field(default=None, description="The key runtime trees are built for, e.g. "
                                                  "cp313t-x86_64-linux-gnu-glibc2.36.")
    free_threaded: bool | None = None
    debug: bool | None = None
    machine: str | None = None
    pointer_bits: int | None = None
    libc: str | None = None
    musl: bool | None = None
    is_venv: bool | None = None
    prefix: str | None = None
    base_prefix: str | None = None
    site_packages: list[str] = Field(default_factory=list)
    sitecustomize: str | None = None


class CommandFacts(_Model):
    """What `launcher run` would see of the command."""

    argv: list[str]
    argv0: str
    resolved: str | None
    kind: Literal["python", "script", "uv", "opaque", "missing"]
    interpreter: str | None
    flags: list[str] = Field(default_factory=list, description="Interpreter flags before the script.")
    note: str
    env_assignments: dict[str, str | None] = Field(
        default_factory=dict, description="Variables an `env` prefix sets (null: unset).")


class Group(_Model):
    """Findings about one subject: the launcher, the cache, the command, an interpreter."""

    kind: GroupKind
    title: str
    status: Status
    interpreter: InterpreterFacts | None = None
    findings: list[Finding] = Field(default_factory=list)


class Counts(_Model):
    ok: int = 0
    warn: int = 0
    fail: int = 0


class Report(_Model):
    """Everything `launcher doctor` found; `exit_code` is 1 when anything fails."""

    schema_version: Literal[1] = SCHEMA_VERSION
    launcher_version: str
    status: Status
    exit_code: int
    counts: Counts
    cache_dir: str
    command: CommandFacts | None = None
    groups: list[Group] = Field(default_factory=list)

    @classmethod
    def assemble(cls, groups: list[Group], *, launcher_version: str, cache_dir: str,
                 command: CommandFacts | None) -> Report:
        counts = Counts()
        for g in groups:
            for f in g.findings:
                setattr(counts, f.status, getattr(counts, f.status) + 1)
        status = worst(f.status for g in groups for f in g.findings)
        return cls(launcher_version=launcher_version, status=status,
                   exit_code=1 if status == "fail" else 0, counts=counts,
                   cache_dir=cache_dir, command=command, groups=groups)

    def findings(self, check: str | None = None) -> list[Finding]:
        return [f for g in self.groups for f in g.findings if check is None or f.check == check]


def worst(statuses: Any) -> Status:
    out: Status = "ok"
    for s in statuses:
        if _RANK[s] > _RANK[out]:
            out = s
    return out


def make_group(kind: GroupKind, title: str, findings: list[Finding],
               interpreter: InterpreterFacts | None = None) -> Group:
    return Group(kind=kind, title=title, status=worst(f.status for f in findings),
                 interpreter=interpreter, findings=findings)


def report_schema() -> dict[str, Any]:
    """The JSON Schema of `launcher doctor --json`."""
    return Report.model_json_schema()


# Shorthands the checks use: one line each, the fix named whenever it is not ok.

def ok(check: Check, message: str, *, fix: str | None = None, details: list[str] | None = None,
       **facts: Any) -> Finding:
    return Finding(check=check, status="ok", message=message, fix=fix, facts=facts,
                   details=details or [])


def warn(check: Check, message: str, fix: str | None, *, details: list[str] | None = None,
         **facts: Any) -> Finding:
    return Finding(check=check, status="warn", message=message, fix=fix, facts=facts,
                   details=details or [])


def fail(check: Check, message: str, fix: str | None, *, details: list[str] | None = None,
         **facts: Any) -> Finding:
    return Finding(check=check, status="fail", message=message, fix=fix, facts=facts,
                   details=details or [])
