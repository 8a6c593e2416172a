"""What would `launcher run COMMAND` start?  The command, seen the way `run` sees it.

`launcher.command.analyse` decides argv[0] (a python, a script with a python
shebang, `uv run`, or something opaque).  Doctor adds what `run` need not
know: an `env NAME=VALUE ...` prefix is unwrapped (it may replace the
PYTHONPATH the gate needs, or set an LD_PRELOAD), `uv run` is asked which
interpreter it would pick, and interpreter flags that skip the gate are named.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from launcher.command import CommandTarget, analyse, looks_like_python
from launcher.doctor.models import CommandFacts, Finding, fail, ok, warn

_BYPASS_WHY = {
    "-E": "-E ignores PYTHON* variables, PYTHONPATH included",
    "-I": "-I (isolated mode) ignores PYTHONPATH and the site directories",
    "-S": "-S skips the site module, which is what imports sitecustomize",
}
# `uv run` options that take a value (so their value is not the command).
_UV_VALUE_OPTS = {
    "--python", "-p", "--with", "--with-editable", "--with-requirements", "--project", "--directory",
    "--package", "--extra", "--group", "--only-group", "--no-group", "--env-file", "--index",
    "--default-index", "--index-url", "--extra-index-url", "--find-links", "-f", "--cache-dir",
    "--config-file", "--color", "--python-platform", "--exclude-newer", "--index-strategy",
    "--keyring-provider", "--resolution", "--prerelease", "--link-mode", "--refresh-package",
    "--reinstall-package", "--upgrade-package", "-P", "--script", "-s", "--gui-script", "--module", "-m",
}


@dataclass
class CommandAnalysis:
    argv: list[str]
    target: CommandTarget
    environ: dict[str, str]  # what the command's interpreters see (env assignments applied)
    assignments: dict[str, str | None] = field(default_factory=dict)
    cleared: bool = False
    interpreter: str | None = None
    origin: str | None = None
    flags: tuple[str, ...] = ()
    findings: list[Finding] = field(default_factory=list)

    def facts(self) -> CommandFacts:
        t = self.target
        return CommandFacts(argv=self.argv, argv0=t.argv0, resolved=t.resolved, kind=t.kind,  # type: ignore[arg-type]
                            interpreter=self.interpreter, flags=list(self.flags), note=t.note,
                            env_assignments=self.assignments)


def analyse_command(argv: list[str], environ: dict[str, str], cwd: Path) -> CommandAnalysis:
    env = dict(environ)
    rest, assignments, cleared, stopped = _unwrap_env(list(argv), env)
    target = analyse(rest or argv, env.get("PATH"))
    out = CommandAnalysis(argv=list(argv), target=target, environ=env, assignments=assignments,
                          cleared=cleared)
    if stopped:
        out.findings.append(warn(
            "command", f"{argv[0]} is given options doctor does not follow; what it starts is "
            "prepared in-process by the gate", "to check an interpreter it starts, add --python PATH"))
        return out
    out.findings.extend(_env_prefix_findings(out))
    out.findings.extend(_filtering_wrapper_findings(rest))
    _classify(out, rest, cwd)
    if out.interpreter is not None:
        out.findings.extend(_bypass_findings(out))
    return out


def _unwrap_env(argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str | None], bool, bool]:
    """Strip `env [-i] [-u NAME] [NAME=VALUE]... ` prefixes, applying them to `env`."""
    assignments: dict[str, str | None] = {}
    cleared = False
    while argv and os.path.basename(argv[0]) == "env":
        i = 1
        while i < len(argv):
            a = argv[i]
            if a in ("-i", "--ignore-environment", "-"):
                env.clear()
                assignments.clear()
                cleared = True
            elif a in ("-u", "--unset") and i + 1 < len(argv):
                i += 1
                env.pop(argv[i], None)
                assignments[argv[i]] = None
            elif a.startswith("--unset="):
                name = a.split("=", 1)[1]
                env.pop(name, None)
                assignments[name] = None
            elif a == "--":
                i += 1
                break
            elif a.startswith("-"):
                return argv, assignments, cleared, True  # -S "split string", -C dir, ...: not followed
            elif "=" in a:
                name, _, value = a.partition("=")
                env[name] = value
                assignments[name] = value
            else:
                break
            i += 1
        argv = argv[i:]
    return argv, assignments, cleared, False


def _env_prefix_findings(a: CommandAnalysis) -> list[Finding]:
    out = []
    if a.cleared:
        out.append(warn(
            "command", "`env -i` clears the environment the launcher prepares (PYTHONPATH, LAUNCHER_*), "
            "so the gate will not run in the interpreters it starts",
            "drop -i, or pass PYTHONPATH and the LAUNCHER_* variables through"))
    pp = a.assignments.get("PYTHONPATH", "")
    if "PYTHONPATH" in a.assignments:
        out.append(warn(
            "command", f"the env prefix sets PYTHONPATH={pp or ''}, replacing the one the launcher "
            "prepares: the gate will not run in the interpreters it starts",
            "set PYTHONPATH before `launcher run` instead; the launcher keeps your entries",
            pythonpath=pp))
    return out


# What the launcher hands its command: these must reach every interpreter.
PASS_THROUGH = ("PYTHONPATH", "LAUNCHER_*", "PYTHON_EXEC", "LD_PRELOAD")
TOX_FIX = ("let them through in tox.ini: [testenv] pass_env = " + ", ".join(PASS_THROUGH)
           + ' (tox.toml: pass_env = [' + ", ".join(f'"{v}"' for v in PASS_THROUGH) + ']); see docs/recipes.md')


def _wrapped(argv: list[str]) -> list[str]:
    """The words of the tool the command runs: past `uvx`, `pipx run` and `python -m`."""
    while argv:
        base = os.path.basename(argv[0])
        if base == "uvx" and len(argv) > 1:
            argv = argv[1:]
        elif (base == "pipx" and argv[1:2] == ["run"]) or (looks_like_python(base) and argv[1:2] == ["-m"]):
            argv = argv[2:]
        else:
            return argv
    return argv


def _filtering_wrapper_findings(argv: list[str]) -> list[Finding]:
    """Wrappers known to start their command with an environment of their own."""
    words = _wrapped(list(argv))
    if not words:
        return []
    tool = os.path.basename(words[0])
    lost = "PYTHONPATH and the LAUNCHER_* variables the launcher prepares do not reach"
    if tool in ("tox", "tox4"):
        return [warn("command", f"tox filters the environment of its test environments (pass_env): {lost} "
                     "a tox env's python, so the gate does not run there", TOX_FIX, wrapper="tox")]
    if tool in ("sudo", "doas") and not any(w in ("-E", "--preserve-env") or w.startswith("--preserve-env=")
                                            for w in words[1:]):
        return [warn("command", f"{tool} resets the environment: {lost} what it starts",
                     f"run the launcher under {tool} instead: {tool} launcher run ... -- COMMAND",
                     wrapper=tool)]
    if tool == "systemd-run":
        return [warn("command", f"systemd-run starts the command from the service manager, with its "
                     f"environment, not yours: {lost} the unit",
                     "run the launcher inside the unit: systemd-run ... launcher run ... -- COMMAND",
                     wrapper=tool)]
    return []


def _classify(a: CommandAnalysis, rest: list[str], cwd: Path) -> None:
    t = a.target
    if not rest:
        a.findings.append(warn("command", "the env prefix names no command; it only prints the "
                               "environment", "give the command to run after the env assignments"))
        return
    if t.kind == "missing" or t.resolved is None:
        a.findings.append(fail(
            "command", f"command not found: {t.argv0} (launcher run would exit 127)",
            "check the spelling and PATH, or give the command's full path", argv0=t.argv0))
        return
    if os.path.isdir(t.resolved) or not os.access(t.resolved, os.X_OK):
        what = "a directory" if os.path.isdir(t.resolved) else "not executable"
        a.findings.append(fail(
            "command", f"{t.resolved} is {what} (launcher run would exit 126)",
            f"chmod +x {t.resolved}" if what != "a directory" else "name a program, not a directory",
            resolved=t.resolved))
        return
    if t.kind == "python":
        a.interpreter, a.origin, a.flags = t.resolved, "argv[0] of the command", t.flags
        a.findings.append(ok("command", f"{t.argv0} is a Python interpreter ({t.resolved})",
                             kind=t.kind, interpreter=t.resolved))
    elif t.kind == "script":
        interp = t.interpreter or ""
        if not os.path.exists(interp):
            a.findings.append(fail(
                "command", f"the shebang of {t.resolved} names {interp}, which does not exist",
                f"the environment {os.path.basename(t.resolved)} was installed into moved or was "
                "deleted: reinstall the package that provides it (or recreate the venv)",
                script=t.resolved, interpreter=interp))
            return
        a.interpreter, a.origin, a.flags = interp, f"shebang of {t.resolved}", t.flags
        a.findings.append(ok("command", f"{t.resolved} is a Python script; its shebang names {interp}",
                             kind=t.kind, script=t.resolved, interpreter=interp))
    elif t.kind == "uv":
        _uv_run(a, rest, cwd)
    else:
        a.findings.append(warn(
            "command", f"{t.argv0}: {t.note}",
            "to check an interpreter it starts, add --python PATH", kind=t.kind, resolved=t.resolved))


def _uv_run(a: CommandAnalysis, argv: list[str], cwd: Path) -> None:
    """`uv run ...`: ask that uv which interpreter it would pick (`uv python find`)."""
    t = a.target
    args = argv[1:]
    if not args or args[0] != "run":
        a.findings.append(warn("command", f"{t.argv0} {' '.join(args[:1])}: not `uv run`; any Python it "
                               "starts is prepared in-process by the gate",
                               "to check an interpreter it starts, add --python PATH", kind="uv"))
        return
    request = None
    directory = cwd
    inner: list[str] = []
    i = 1
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if arg == "--":
            inner = args[i + 1:]
            break
        if name in ("--python", "-p", "--directory", "--project") and (eq or i + 1 < len(args)):
            if not eq:
                i += 1
                value = args[i]
            if name in ("--python", "-p"):
                request = value
            else:
                directory = (cwd / value)
        elif arg in _UV_VALUE_OPTS:
            i += 1
        elif not arg.startswith("-"):
            inner = args[i:]
            break
        i += 1
    cmd = [t.resolved or "uv", "python", "find"] + ([request] if request else [])
    env = {k: v for k, v in a.environ.items() if not k.startswith("LAUNCHER_") and k != "LD_PRELOAD"}
    try:
        proc = subprocess.run(cmd, cwd=directory, env=env, capture_output=True, text=True, encoding="utf-8",
                              errors="replace", timeout=60, stdin=subprocess.DEVNULL)
        found = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else None
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    except (OSError, subprocess.TimeoutExpired) as exc:
        found, why = None, str(exc)
    if found is None:
        a.findings.append(warn(
            "command", f"`uv python find` could not say which interpreter `uv run` would use ({why}); "
            "the gate prepares it in-process when it starts",
            "create the project environment first (uv sync) to check it here", kind="uv"))
        return
    a.interpreter, a.origin = found, "the interpreter `uv run` would use (uv python find)"
    if inner and looks_like_python(inner[0]):
        a.flags = _leading_flags(inner[1:])
    a.findings.append(ok("command", f"`uv run` would use {found} (as `uv python find` reports in "
                                    f"{directory}); PYTHONPATH passes through uv, so the gate runs there",
                         kind="uv", interpreter=found))


def _leading_flags(args: list[str]) -> tuple[str, ...]:
    """Interpreter flags before the script, `-c` or `-m` (as `launcher.command` reads them)."""
    flags = []
    for arg in args:
        if arg in ("-c", "-m") or not arg.startswith("-"):
            break
        flags.append(arg)
    return tuple(flags)


def _bypass_findings(a: CommandAnalysis) -> list[Finding]:
    flags = CommandTarget(a.target.argv0, a.target.resolved, "python", a.interpreter, a.flags, "").bypasses_gate
    if not flags:
        return []
    why = "; ".join(_BYPASS_WHY[f] for f in flags)
    return [warn(
        "startup", f"{a.interpreter} is started with {' '.join(flags)}, so the launcher's gate will not "
        f"run there ({why}): no runtime packages on its sys.path; preloads still apply through the shim",
        f"drop {' '.join(flags)} (-s and -P isolate without skipping the gate), or install the packages "
        "into that interpreter's own environment", flags=list(flags), interpreter=a.interpreter)]
