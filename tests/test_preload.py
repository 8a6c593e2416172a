"""Native preloads through a shim interpreter (issue 3).

Every check looks at what the kernel really mapped (/proc/<pid>/maps) or
at the environment a process was exec'd with (/proc/self/environ): a
preload the loader cannot find is ignored with exit 0, so exit codes and
LD_PRELOAD strings prove nothing on their own.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

from conftest import foreign_python, launcher, missing, preload_lib
from launcher import preload
from launcher.gate import _launcher_preloads as gate

# What a child reports about itself, as one JSON line on stdout.
FACTS = r'''
import json, os, sys

def maps(pid="self"):
    with open("/proc/%s/maps" % pid) as f:
        return f.read()

def exec_env(name):
    # /proc/self/environ keeps the environment this process was exec'd with,
    # i.e. what the shim set before the gate restored the caller's values.
    with open("/proc/self/environ", "rb") as f:
        for item in f.read().split(b"\0"):
            if item.startswith(name.encode() + b"="):
                return item.split(b"=", 1)[1].decode()
    return None

def facts(**extra):
    m = maps()
    out = {
        "pid": os.getpid(),
        "jemalloc": "/libjemalloc" in m,
        "asan": "/libasan" in m,
        "tcmalloc": "/libtcmalloc" in m,
        "ld_preload": os.environ.get("LD_PRELOAD", "<unset>"),
        "exec_ld_preload": exec_env("LD_PRELOAD"),
        "reexec": os.environ.get("LAUNCHER_REEXEC_PID") == str(os.getpid()),
        "executable": sys.executable,
        "base_executable": getattr(sys, "_base_executable", None),
        "python_exec": os.environ.get("PYTHON_EXEC"),
    }
    out.update(extra)
    return out
'''

CHILD_FACTS = FACTS + "\nprint(json.dumps(facts()))\n"
SH_MAPS = 'echo "${LD_PRELOAD+set}:${LD_PRELOAD-}"; cat /proc/self/maps'


def _last_json(stdout: str) -> dict:
    lines = [x for x in stdout.splitlines() if x.startswith("{")]
    assert lines, f"no JSON in output: {stdout!r}"
    return json.loads(lines[-1])


def _run(*args: str, env: dict[str, str], **kw: Any) -> dict:
    proc = launcher("run", *args, env=env, check=True, **kw)
    return _last_json(proc.stdout)


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"{FACTS}\nFACTS = {FACTS!r}\nSH_MAPS = {SH_MAPS!r}\n{body}")
    return str(path)


def _shims(env: dict[str, str]) -> Path:
    return Path(env["LAUNCHER_CACHE_DIR"]) / "shims"


# --- the top process, its shell children and the caller's LD_PRELOAD ------------

TOP = r'''
import subprocess
sh = subprocess.run(["sh", "-c", SH_MAPS], capture_output=True, text=True, check=True).stdout
state, _, rest = sh.partition("\n")
print(json.dumps(facts(sh_state=state, sh_jemalloc="/libjemalloc" in rest,
                       sh_tcmalloc="/libtcmalloc" in rest)))
'''


@pytest.mark.parametrize("caller", ["unset", "empty", "tcmalloc"])
def test_top_process_maps_jemalloc_and_shell_child_keeps_callers_ld_preload(
        caller: str, py311: str, env: dict[str, str], jemalloc: str, tmp_path: Path) -> None:
    if caller == "empty":
        env["LD_PRELOAD"] = ""
    elif caller == "tcmalloc":
        preload_lib("libtcmalloc_minimal.so.4", "apt-get install libtcmalloc-minimal4")
        env["LD_PRELOAD"] = "libtcmalloc_minimal.so.4"
    script = _script(tmp_path, "top.py", TOP)
    got = _run("--preload", "jemalloc", "--", py311, script, env=env)

    assert got["jemalloc"], got
    # sys.executable is the real interpreter (tools persist it); torchrun's
    # workers start through the shim via PYTHON_EXEC.
    assert got["executable"] == py311 and "/shims/" not in str(got["base_executable"])
    assert Path(got["python_exec"]).parent.parent == _shims(env), "children must start through the shim"
    # Ours first, the caller's own entries kept after ours.
    want_exec = jemalloc + (":" + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
    assert got["exec_ld_preload"] == want_exec
    # Inside Python, and in every non-Python child, the caller's exact value.
    assert got["ld_preload"] == env.get("LD_PRELOAD", "<unset>")
    assert got["sh_state"] == {"unset": ":", "empty": "set:", "tcmalloc": "set:libtcmalloc_minimal.so.4"}[caller]
    assert not got["sh_jemalloc"]
    assert got["tcmalloc"] == got["sh_tcmalloc"] == (caller == "tcmalloc")


# --- every kind of Python descendant, on every ABI --------------------------------

DESCENDANTS = r'''
import multiprocessing as mp
import subprocess

CHILD = FACTS + "\nprint(json.dumps(facts()))\n"

def worker(q):
    q.put(facts())

def via(method):
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=worker, args=(q,))
    p.start()
    got = q.get(timeout=120)
    p.join()
    return got

def child(argv):
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])

if __name__ == "__main__":
    real = sys.argv[1]
    print(json.dumps(facts(
        spawn=via("spawn"),
        forkserver=via("forkserver"),
        sys_executable=child([sys.executable, "-c", CHILD]),
        isolated=child([sys.executable, "-I", "-c", CHILD]),
        # A shell script starting the interpreter by name, bypassing any shim.
        by_name=child(["sh", "-c", 'PATH="$1:$PATH"; "$2" -c "$3"', "sh",
                       os.path.dirname(real), os.path.basename(real), CHILD]),
    )))
'''


@pytest.mark.parametrize("which", ["py311", "py313", "py313t"])
def test_every_python_descendant_maps_jemalloc(which: str, request: pytest.FixtureRequest,
                                               env: dict[str, str], jemalloc: str, tmp_path: Path) -> None:
    python = request.getfixturevalue(which)
    script = _script(tmp_path, "descendants.py", DESCENDANTS)
    got = _run("--preload", "jemalloc", "--", python, script, python, env=env, timeout=600)

    assert got["jemalloc"] and not got["reexec"], "the top process comes up through its shim"
    assert got["executable"] == python, "sys.executable must be what a bare run gives"
    for kind in ("spawn", "forkserver", "sys_executable", "by_name"):
        child = got[kind]
        assert child["jemalloc"], f"{which} {kind} worker: {child}"
        assert child["ld_preload"] == "<unset>", f"{which} {kind}: caller's LD_PRELOAD not restored"
        assert child["pid"] != got["pid"]
        assert child["executable"] == python, f"{which} {kind}: {child['executable']}"
    # Workers start through the shim (the multiprocessing executable), and so do
    # subprocess children of sys.executable (argv unchanged); a child started by
    # name re-execs itself once.
    assert got["by_name"]["reexec"]
    assert not any(got[k]["reexec"] for k in ("spawn", "forkserver", "sys_executable"))
    # A -I child runs no gate, which could not restore LD_PRELOAD for its own
    # children: it is not started through the shim.
    assert not got["isolated"]["jemalloc"] and got["isolated"]["ld_preload"] == "<unset>"


# --- re-exec: once, before user code, argv/cwd/stdin intact ----------------------

REEXEC_CHILD = r'''
with open(os.environ["MARK"], "a") as f:  # user code: must run exactly once
    f.write("%d\n" % os.getpid())
data = sys.stdin.read()
print(json.dumps(facts(argv=sys.argv, cwd=os.getcwd(), stdin_len=len(data), stdin_ok=data == open(os.environ["WANT"], encoding="utf-8").read(),
                       parent_jemalloc="/libjemalloc" in maps(os.getppid()))))
'''


@pytest.mark.parametrize("which", ["py311", "pypy"])
def test_reexec_once_before_user_code_with_argv_cwd_and_stdin(
        which: str, request: pytest.FixtureRequest, env: dict[str, str], jemalloc: str, tmp_path: Path) -> None:
    # PyPy 3.9 has no sys.orig_argv: the gate rebuilds argv from /proc/self/cmdline.
    python = request.getfixturevalue(which) if which == "py311" else foreign_python("pypy")
    script = _script(tmp_path, "child.py", REEXEC_CHILD)
    work = tmp_path / "work dir"
    work.mkdir()
    mark = tmp_path / "mark"
    data = "".join(f"line {i} é\n" for i in range(20000))  # ~250 KB: more than a pipe buffer
    want = tmp_path / "want"
    want.write_text(data, encoding="utf-8")
    env.update(MARK=str(mark), WANT=str(want), PYTHONIOENCODING="utf-8")
    # An opaque top command (a shell) that starts python by name: no shim on the way.
    sh = 'cd "$1" && PATH="$2:$PATH" exec "$3" "$4" "a b" "" c'
    proc = launcher("run", "--record", "--preload", "jemalloc", "--", "sh", "-c", sh, "sh", str(work),
                    os.path.dirname(python), os.path.basename(python), script, env=env, input=data, check=True)
    got = _last_json(proc.stdout)

    assert got["jemalloc"] and got["reexec"], got
    assert got["argv"] == [script, "a b", "", "c"]
    assert got["cwd"] == str(work)
    assert got["stdin_ok"], f"stdin arrived with {got['stdin_len']} chars, sent {len(data)}"
    assert not got["parent_jemalloc"], "the shell itself must not get the preloads"
    assert got["ld_preload"] == "<unset>"
    assert mark.read_text().split() == [str(got["pid"])], "user code ran more than once"
    assert proc.stderr == ""
    # The gate ran (and recorded) once in that pid: the re-exec'd image, via the shim.
    runs = list((Path(env["LAUNCHER_CACHE_DIR"]) / "runs").glob("*.jsonl"))
    events = [json.loads(x) for r in runs for x in r.read_text().splitlines()]
    mine = [e for e in events if e.get("event") == "gate" and e["pid"] == got["pid"]]
    assert len(mine) == 1 and mine[0]["via_shim"] is True, events
    assert mine[0]["preloads_mapped"] == [jemalloc]


SAME_PID_EXEC = r'''
# The shim'd process execs the *real* interpreter itself (as some tools do):
# LD_PRELOAD is already restored, so the new image must not pass for shim'd.
real = sys.argv[1]
child = FACTS + "\nprint(json.dumps(facts()))\n"
sys.stdout.flush()
os.execv(real, [real, "-c", child])
'''


def test_exec_of_the_real_interpreter_in_the_same_pid_still_gets_preloads(
        py311: str, env: dict[str, str], jemalloc: str, tmp_path: Path) -> None:
    script = _script(tmp_path, "same_pid.py", SAME_PID_EXEC)
    got = _run("--preload", "jemalloc", "--", py311, script, py311, env=env)
    assert got["jemalloc"] and got["reexec"], got


def test_top_python_behind_a_wrapper_script_starts_through_its_shim(
        py311: str, env: dict[str, str], jemalloc: str, tmp_path: Path) -> None:
    # pyenv/asdf put a `python3` *script* on PATH that execs the real one; the
    # probe then reports the real one. The top process must still come up
    # through a shim, not pay for (or, with warn, complain about) a re-exec.
    wrapper = tmp_path / "bin" / "python3"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec "{py311}" "$@"\n')
    wrapper.chmod(0o755)
    env["PATH"] = f"{wrapper.parent}{os.pathsep}{env['PATH']}"
    proc = launcher("run", "--preload", "jemalloc", "--preload-missing", "warn", "--", "python3", "-c",
                    CHILD_FACTS, env=env, check=True)
    got = _last_json(proc.stdout)
    assert got["jemalloc"] and not got["reexec"], got
    assert proc.stderr == ""


EMBEDDED = r'''
import subprocess
real, ldso = sys.argv[1], sys.argv[2]
child = FACTS + "\nprint(json.dumps(facts(exe=os.path.realpath('/proc/self/exe'))))\n"
p = subprocess.run([ldso, real, "-c", child], capture_output=True, text=True, timeout=60)
print(json.dumps({"rc": p.returncode, "stderr": p.stderr, "child": json.loads(p.stdout.splitlines()[-1])}))
'''


def test_no_reexec_when_the_binary_is_not_sys_executable(
        py311: str, env: dict[str, str], jemalloc: str, tmp_path: Path) -> None:
    # Run by the dynamic loader, /proc/self/exe is ld.so, not sys.executable:
    # like an embedded interpreter, it must be left alone (and must not loop).
    ldso = preload.ldso_path()
    if ldso is None:
        missing("no ld.so at a known path on this machine")
    script = _script(tmp_path, "embedded.py", EMBEDDED)
    got = _run("--record", "--preload", "jemalloc", "--", py311, script, py311, ldso, env=env)
    assert got["rc"] == 0 and got["stderr"] == "", got
    assert got["child"]["exe"] == os.path.realpath(ldso)
    assert not got["child"]["reexec"] and not got["child"]["jemalloc"]
    runs = list((Path(env["LAUNCHER_CACHE_DIR"]) / "runs").glob("*.jsonl"))
    gates = [e for r in runs for e in map(json.loads, r.read_text().splitlines())
             if e.get("event") == "gate" and e["pid"] == got["child"]["pid"]]
    assert len(gates) == 1 and gates[0]["via_shim"] is False, "the gate itself still ran, once"


# --- policies: --preload-missing, --preload-scope ---------------------------------

BY_NAME = 'PATH="$1:$PATH" exec "$2" -c "$3"'


def test_preload_missing_warn_says_one_line_and_does_not_reexec(
        py311: str, env: dict[str, str], jemalloc: str) -> None:
    proc = launcher("run", "--preload", "jemalloc", "--preload-missing", "warn", "--", "sh", "-c", BY_NAME,
                    "sh", os.path.dirname(py311), "python3", CHILD_FACTS, env=env, check=True)
    got = _last_json(proc.stdout)
    assert not got["jemalloc"] and not got["reexec"]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("launcher: ") and "shim" in lines[0], proc.stderr
    # Its own Python children still get the preloads (torchrun's through PYTHON_EXEC).
    assert got["executable"] == os.path.join(os.path.dirname(py311), "python3")
    assert Path(got["python_exec"]).parent.parent == _shims(env)


def test_preload_missing_ignore_is_silent(py311: str, env: dict[str, str], jemalloc: str) -> None:
    proc = launcher("run", "--preload", "jemalloc", "--preload-missing", "ignore", "--", "sh", "-c", BY_NAME,
                    "sh", os.path.dirname(py311), "python3", CHILD_FACTS, env=env, check=True)
    got = _last_json(proc.stdout)
    assert not got["jemalloc"] and not got["reexec"]
    assert proc.stderr == ""


def test_preload_scope_all_exports_to_every_descendant(
        py311: str, env: dict[str, str], jemalloc: str, tmp_path: Path) -> None:
    script = _script(tmp_path, "top.py", TOP)
    got = _run("--preload", "jemalloc", "--preload-scope", "all", "--", py311, script, env=env)
    assert got["jemalloc"] and got["sh_jemalloc"], got
    assert got["ld_preload"] == jemalloc and got["sh_state"] == "set:" + jemalloc
    assert not _shims(env).exists(), "scope=all needs no shim"


# --- ordering and checks before anything runs ----------------------------------------

def test_asan_goes_first_and_never_reaches_shell_children(
        py311: str, env: dict[str, str], jemalloc: str, tmp_path: Path) -> None:
    asan = preload_lib("asan", "apt-get install libasan8")
    # A non-instrumented python under the ASan runtime may "leak" at exit
    # (objects alive at shutdown; Debian's python3.11 does), and LeakSanitizer
    # then turns exit 0 into 1. Leaks are not what this test is about.
    env["ASAN_OPTIONS"] = "detect_leaks=0"
    script = _script(tmp_path, "top.py", TOP)
    # Asked for second, placed first: the loader refuses ASan anywhere else.
    got = _run("--preload", "jemalloc", "--preload", "asan", "--", py311, script, env=env)
    assert got["exec_ld_preload"] == f"{asan}:{jemalloc}"
    assert got["asan"] and got["jemalloc"]
    assert got["ld_preload"] == "<unset>" and got["sh_state"] == ":"
    assert not got["sh_jemalloc"]
    sh = launcher("run", "--preload", "asan", "--", py311, "-c",
                  "import subprocess; p = subprocess.run(['sh', '-c', 'cat /proc/self/maps; exit 3'], "
                  "capture_output=True, text=True); print(p.returncode, '/libasan' in p.stdout, repr(p.stderr))",
                  env=env, check=True)
    assert sh.stdout.split() == ["3", "False", "''"]


def test_resolution_orders_and_dedupes() -> None:
    jem = preload_lib("jemalloc", "apt-get install libjemalloc2")
    asan = preload_lib("asan", "apt-get install libasan8")
    libs = preload.resolve(["jemalloc", "libjemalloc.so.2", jem, "asan"])
    assert [lib.path for lib in libs] == [asan, jem]
    assert libs[1].requested == "jemalloc"


def _fake_elf(path: Path, bits: int, machine: int) -> str:
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1, 1, 0]) + bytes(8)
    header = ident + struct.pack("<HHI", 3, machine, 1)  # ET_DYN, e_machine, EV_CURRENT
    path.write_bytes(header + bytes((64 if bits == 64 else 52) - len(header)))
    return str(path)


def _bad_preloads(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    text = tmp_path / "libtext.so"
    text.write_text("not a library\n")
    return {
        "missing-path": (["/nonexistent.so"], "/nonexistent.so: no such file"),
        "missing-soname": (["libdoesnotexist.so.7"], "not found by the dynamic loader"),
        "aarch64": ([_fake_elf(tmp_path / "libarm.so", 64, 183)], "64-bit aarch64"),
        "i386": ([_fake_elf(tmp_path / "lib32.so", 32, 3)], "32-bit i386"),
        "not-elf": ([str(text)], "not an ELF shared library"),
        "two-allocators": (["jemalloc", "tcmalloc"], "two allocators"),
        "two-sanitizers": (["asan", "libtsan.so.2"], "two sanitizer runtimes"),
    }


@pytest.mark.parametrize("case", ["missing-path", "missing-soname", "aarch64", "i386", "not-elf",
                                  "two-allocators", "two-sanitizers"])
def test_bad_preload_fails_before_exec_with_one_line(case: str, env: dict[str, str], tmp_path: Path) -> None:
    libs, why = _bad_preloads(tmp_path)[case]
    if case == "two-allocators":
        preload_lib("jemalloc", "apt-get install libjemalloc2")
        preload_lib("tcmalloc", "apt-get install libtcmalloc-minimal4")
    if case == "two-sanitizers":
        preload_lib("asan", "apt-get install libasan8")
        preload_lib("libtsan.so.2", "apt-get install libtsan2")
    marker = tmp_path / "ran"
    args = [a for lib in libs for a in ("--preload", lib)]
    proc = launcher("run", *args, "--", "sh", "-c", 'touch "$0"', str(marker), env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("launcher: ") and why in lines[0], proc.stderr
    assert proc.stdout == "" and not marker.exists(), "the command must not run"


# --- shims and the warm path ----------------------------------------------------------

def test_shim_is_written_once_atomically(tmp_path: Path) -> None:
    d = str(tmp_path / "shims" / "abc")
    real = "/opt/some venv/bin/python3"  # a space and unresolved: quoted, kept as given
    path = gate.write_shim(d, real, ["/lib/libx.so", "/lib/liby.so"])
    st = os.stat(path)
    assert st.st_mode & 0o111
    assert gate.write_shim(d, real, ["/lib/libx.so", "/lib/liby.so"]) == path
    assert os.stat(path).st_ino == st.st_ino, "an identical shim is not rewritten"
    assert os.listdir(d) == [os.path.basename(path)], "no temp files left behind"
    text = Path(path).read_text()
    assert "exec '/opt/some venv/bin/python3' \"$@\"" in text
    assert "'/lib/libx.so:/lib/liby.so'" in text
    assert gate.shim_path(d, real) != gate.shim_path(d, "/opt/other/bin/python3")


def test_warm_path_keeps_preloads_and_a_deleted_shim_is_rewritten(
        py311: str, env: dict[str, str], jemalloc: str) -> None:
    args = ("--preload", "jemalloc", "--", py311, "-c", CHILD_FACTS)
    assert _run(*args, env=env)["jemalloc"]
    memo = list((Path(env["LAUNCHER_CACHE_DIR"]) / "memo").glob("run-*.marshal"))
    assert memo, "the first run should have been remembered for the warm path"
    assert _run(*args, env=env)["jemalloc"]
    shutil.rmtree(_shims(env))
    assert _run(*args, env=env)["jemalloc"]


def test_gate_mapped_reports_only_what_is_loaded() -> None:
    found = gate.mapped(["libc.so.6", "/nonexistent/libnothing.so.1"])
    assert found == ["libc.so.6"]
