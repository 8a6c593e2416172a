# Process trees on Linux: adopt what a command leaves behind, find every
# descendant, end them all.  Used by `launcher run --supervise` (on the warm
# path: nothing imported beyond posix/signal/time and `_ctypes` for one prctl)
# and, loaded by path, by the Executor's and the replicas' workers inside any
# interpreter the user picked: so stdlib only, CPython 3.8+ and PyPy.
import posix
import time

try:
    import _signal as signal  # without the enums `signal` builds at import (~6 ms)
except ImportError:  # PyPy and others
    import signal

PR_SET_CHILD_SUBREAPER = 36


def _prctl():
    """libc's prctl, through `_ctypes` (a tenth of what `import ctypes` costs)."""
    try:
        import _ctypes

        class _Int(_ctypes._SimpleCData):
            _type_ = "i"

        class _Fn(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL
            _restype_ = _Int

        return _Fn(_ctypes.dlsym(_ctypes.dlopen(None, 0), "prctl"))
    except Exception:
        import ctypes

        return ctypes.CDLL(None).prctl


def become_subreaper():
    """Adopt orphaned descendants (Linux >= 3.4): a process that daemonises
    (double fork, setsid) is re-parented to us, not to init, so it stays in
    our tree.  True when it worked."""
    try:
        return _prctl()(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except Exception:
        return False


def _table():
    """{pid: (ppid, state)} of every process /proc shows."""
    out = {}
    try:
        names = posix.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/" + name + "/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        rest = data[data.rfind(b")") + 2:].split()
        try:
            out[int(name)] = (int(rest[1]), rest[0])
        except (IndexError, ValueError):
            continue
    return out


def descendants(pid=None):
    """The live (not zombie) descendants of `pid` (default: this process)."""
    root = posix.getpid() if pid is None else pid
    table = _table()
    children = {}
    for p, (pp, _state) in table.items():
        children.setdefault(pp, []).append(p)
    out = []
    stack = [root]
    while stack:
        for c in children.get(stack.pop(), ()):
            stack.append(c)
            if table[c][1] != b"Z":
                out.append(c)
    return out


def has_children():
    """Whether this process has any child, running or a zombie (cheap: no /proc scan).
    For a subreaper, none means no descendant at all."""
    try:
        posix.waitid(posix.P_ALL, 0, posix.WEXITED | posix.WNOHANG | posix.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def reap():
    """Collect every child of ours that has exited, without blocking."""
    while True:
        try:
            pid, _ = posix.waitpid(-1, posix.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _signal(pids, sig):
    for p in pids:
        try:
            posix.kill(p, sig)
        except OSError:
            pass  # gone, or no longer ours


def end_tree(grace, poll=0.01):
    """SIGTERM every descendant of this process (then SIGCONT, so a stopped
    one can act on it), SIGKILL those still there after `grace` seconds,
    until none is left; reaps what it ends.  Returns how many it signalled."""
    if not has_children():
        return 0  # no child: no descendant at all (no /proc scan)
    seen = set()
    deadline = time.monotonic() + grace
    hard_stop = deadline + 10.0  # a process that survives SIGKILL this long is not ours to wait for
    while True:
        reap()
        alive = descendants()
        if not alive:
            break
        now = time.monotonic()
        if now >= hard_stop:
            break
        if now >= deadline:
            _signal(alive, signal.SIGKILL)
        else:
            fresh = [p for p in alive if p not in seen]
            _signal(fresh, signal.SIGTERM)
            _signal(fresh, signal.SIGCONT)
        seen.update(alive)
        time.sleep(poll)
    reap()
    return len(seen)
