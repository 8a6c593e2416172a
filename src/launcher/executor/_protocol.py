# Framing between the driver and its workers, and the spill files that carry
# large results.  Loaded by the driver (`launcher.executor`) AND by the worker
# script inside a foreign interpreter (CPython 3.8+, PyPy), where the launcher
# package is not importable: so stdlib only, version-neutral, no annotations
# that need a newer Python.
import os
import select
import struct

# kind, task id, payload length
HEADER = struct.Struct("!BQQ")

# driver -> worker
TASK = 1
INIT = 2
EXIT = 3
# worker -> driver
READY = 10
OK = 11  # payload: the pickled result
SPILLED = 12  # payload: empty; the result is in the task's spill file
ERROR = 13  # payload: pickled dict (see the worker's _error_payload)
FATAL = 14  # payload: utf-8 text; the worker cannot serve (no cloudpickle, bad init)

# Results up to this size travel through the pipe; larger ones are spilled.
SPILL_THRESHOLD = 1 << 20
# How much of a mapped spill file is copied before its pages are dropped.
MAP_CHUNK = 8 << 20
PROTOCOL = 5


class Closed(Exception):
    """The other side closed its end of the pipe (it exited or died)."""


def write_frame(fd, kind, task_id, payload=b""):
    head = HEADER.pack(kind, task_id, len(payload))
    if len(payload) <= 65536:
        data = memoryview(head + bytes(payload))
    else:
        _write_all(fd, memoryview(head))
        data = memoryview(payload).cast("B")
    _write_all(fd, data)


def _write_all(fd, view):
    while view:
        n = os.write(fd, view)
        view = view[n:]


class FrameReader:
    """Reads frames from a pipe.  Progress is kept on the object, so a signal
    that interrupts a read (KeyboardInterrupt in an idle worker) loses no bytes:
    calling `read` again resumes where it stopped."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = bytearray()
        self._frame = None  # (kind, task_id, payload bytearray, filled)
        self._poll = None

    def wait(self, timeout):
        """True when a frame (or EOF) can be read within `timeout` seconds."""
        if self.buf or self._frame is not None:
            return True
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self.fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        return bool(self._poll.poll(None if timeout is None else max(0, int(timeout * 1000))))

    def read(self):
        """The next (kind, task_id, payload); raises Closed at EOF."""
        if self._frame is None:
            while len(self.buf) < HEADER.size:
                self._fill()
            kind, task_id, size = HEADER.unpack_from(self.buf)
            del self.buf[:HEADER.size]
            payload = bytearray(size)
            take = min(size, len(self.buf))
            payload[:take] = self.buf[:take]
            del self.buf[:take]
            self._frame = [kind, task_id, payload, take]
        frame = self._frame
        view = memoryview(frame[2])
        try:
            while frame[3] < len(view):
                n = os.readv(self.fd, [view[frame[3]:]])
                if not n:
                    raise Closed()
                frame[3] += n
        finally:
            view.release()
        self._frame = None
        return frame[0], frame[1], frame[2]

    def _fill(self):
        chunk = os.read(self.fd, 65536)
        if not chunk:
            raise Closed()
        self.buf += chunk


# ------------------------------------------------------------------ spill files


def open_private(path):
    """A new private file (spill, log, entry): 0600, never an existing file, never a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags, 0o600)


def write_private(path, data):
    """Write `data` to a new private file at `path` (see `open_private`)."""
    fd = open_private(path)
    try:
        _write_all(fd, memoryview(data))
    finally:
        os.close(fd)


class SpillSink:
    """A write target for a pickler: memory up to `threshold` bytes, then the
    file at `path` (so a huge result is written once, never held twice)."""

    def __init__(self, path, threshold=SPILL_THRESHOLD):
        self.path = path
        self.threshold = threshold
        self.parts = []
        self.size = 0
        self.fd = None

    def write(self, data):
        view = memoryview(data)
        n = view.nbytes
        if self.fd is None and self.size + n > self.threshold:
            self.fd = open_private(self.path)
            for part in self.parts:
                _write_all(self.fd, memoryview(part))
            self.parts = []
        if self.fd is None:
            self.parts.append(bytes(view))
        else:
            _write_all(self.fd, view.cast("B"))
        self.size += n
        return n

    @property
    def spilled(self):
        return self.fd is not None

    def getvalue(self):
        return b"".join(self.parts)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = -1

    def discard(self):
        """Remove what was written (the pickling failed half-way)."""
        spilled = self.fd is not None
        self.close()
        self.parts = []
        if spilled:
            try:
                os.unlink(self.path)
            except OSError:
                pass


class MappedReader:
    """A file-like view of a mapped spill file for `pickle.load`.

    `readinto` copies straight from the mapping into the unpickler's buffer,
    a chunk at a time, and drops the copied pages from this process (they
    stay in the page cache): receiving N bytes costs N bytes of RSS, not 2N.
    """

    def __init__(self, mm):
        self.mm = mm
        self.pos = 0
        self.dropped = 0

    def _drop(self):
        done = self.pos - self.pos % MAP_CHUNK
        if done > self.dropped and hasattr(self.mm, "madvise"):
            import mmap

            self.mm.madvise(mmap.MADV_DONTNEED, self.dropped, done - self.dropped)
            self.dropped = done

    def readinto(self, buf):
        out = memoryview(buf).cast("B")
        total = 0
        src = memoryview(self.mm)
        try:
            while total < len(out) and self.pos < len(src):
                n = min(len(out) - total, len(src) - self.pos, MAP_CHUNK)
                out[total:total + n] = src[self.pos:self.pos + n]
                total += n
                self.pos += n
                self._drop()
        finally:
            src.release()
            out.release()
        return total

    def read(self, n=-1):
        end = len(self.mm) if n is None or n < 0 else min(len(self.mm), self.pos + n)
        data = self.mm[self.pos:end]
        self.pos = end
        self._drop()
        return data

    def readline(self):
        end = self.mm.find(b"\n", self.pos)
        end = len(self.mm) if end < 0 else end + 1
        return self.read(end - self.pos)


def load_spill(path, loads_file):
    """Unpickle the spill file at `path` with `loads_file(fileobj)` via mmap,
    then remove it.  Opened with O_NOFOLLOW and checked to be our own regular
    file: the spill directory is private, but a file we read must be ours."""
    import mmap
    import stat

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise PermissionError("spill file %s is not a private file of this user" % path)
        if st.st_size == 0:
            raise EOFError("spill file %s is empty" % path)
        mm = mmap.mmap(fd, st.st_size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
    try:
        return loads_file(MappedReader(mm))
    finally:
        mm.close()
