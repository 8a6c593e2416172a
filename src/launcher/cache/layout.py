"""Where everything the launcher keeps lives, and the checks that it is usable.

One root (``LAUNCHER_CACHE_DIR`` or the platform's user cache dir); every
other module asks this one for paths instead of joining strings itself.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from launcher.errors import UsageError

TREE_FORMAT = 2  # 2: immutable trees with a directory list (.launcher-dirs)


def default_cache_dir() -> Path:
    env = os.environ.get("LAUNCHER_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("launcher", appauthor=False))


@dataclass(frozen=True)
class CacheLayout:
    root: Path

    @property
    def trees(self) -> Path:
        return self.root / "trees"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def failures(self) -> Path:
        return self.root / "failures"

    @property
    def probes(self) -> Path:
        return self.root / "probes"

    @property
    def specs(self) -> Path:
        return self.root / "specs"

    @property
    def bootstrap(self) -> Path:
        return self.root / "bootstrap"

    @property
    def shims(self) -> Path:
        return self.root / "shims"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def installs_log(self) -> Path:
        return self.log / "installs.jsonl"

    @property
    def memo(self) -> Path:
        return self.root / "memo"

    def tree_name(self, abi_key: str, spec_hash: str) -> str:
        return f"{abi_key}-{spec_hash}"

    def tree(self, abi_key: str, spec_hash: str) -> Path:
        return self.trees / self.tree_name(abi_key, spec_hash)

    def lock(self, abi_key: str, spec_hash: str) -> Path:
        return self.tree_lock(self.tree_name(abi_key, spec_hash))

    def tree_lock(self, tree_name: str) -> Path:
        """The build lock of the tree called `tree_name` (its pid file sits beside it)."""
        return self.locks / f"{tree_name}.lock"

    def failure(self, abi_key: str, spec_hash: str) -> Path:
        return self.failures / f"{abi_key}-{spec_hash}.json"

    def spec_file(self, spec_hash: str) -> Path:
        return self.specs / f"{spec_hash}.json"

    def scratch(self, kind: str, tree_name: str) -> Path:
        """A new sibling of a tree: `.tmp-` (a build) or `.trash-` (a tree moved
        aside to be deleted), named `.<kind>-<tree>-<pid>-<ns>` so a sweep can
        tell whose it is (`manage.stale_build_dirs`, doctor's temp check)."""
        import time

        return self.trees / f".{kind}-{tree_name}-{os.getpid()}-{time.time_ns() % 10**9}"

    def tree_names(self) -> list[str]:
        """The entries of trees/ that are (or claim to be) trees, sorted; build
        temps (`.tmp-*`, `.trash-*`) left out.  Empty when trees/ is absent or
        not a real directory (never listed through a link); OSError when it
        cannot be read."""
        from launcher.cache.safety import real_dir

        if not real_dir(self.trees):
            return []
        return sorted(n for n in os.listdir(self.trees) if not n.startswith("."))

    @property
    def used(self) -> Path:
        return self.root / "used"

    def ensure(self, *, extra: tuple[Path, ...] = ()) -> None:
        """Create the root (0700) or fail with a line that names the fix; then
        refuse (exit 2) unless it is safe to run code from (`safety.check`)."""
        from launcher.cache import safety

        # Kinds and ownership first: never create anything through a link or
        # inside a directory another user controls.
        safety.check(self, extra=extra)
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            for sub in (self.trees, self.locks, self.failures, self.specs, self.log, self.runs,
                        self.bootstrap, self.memo, self.probes, self.used):
                # Each made with its own mode whatever the umask, and held to
                # the rule as opened (not as looked at a moment ago).
                os.close(safety.open_dir(self.root, sub.name, create=True))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise  # a full or read-only disk: callers degrade, the command still runs
            raise UsageError(
                f"cache dir {self.root} cannot be created: {exc.strerror or exc}",
                fix="set LAUNCHER_CACHE_DIR to a writable directory",
            ) from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise UsageError(
                f"cache dir {self.root} is not writable",
                fix="set LAUNCHER_CACHE_DIR to a writable directory",
            )


def writable_by_others(path: Path) -> bool:
    """Group- or other-writable without the sticky bit (what doctor's temp-cache fallback asks)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWGRP | stat.S_IWOTH)) and not bool(mode & stat.S_ISVTX)


def read_only(root: Path) -> bool:
    """An existing cache this process cannot write (a read-only mount, a
    prewarmed image): it still serves what it holds, without writing."""
    return root.is_dir() and not os.access(root, os.W_OK | os.X_OK)
