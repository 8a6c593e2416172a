"""Which of the driver's variables a worker gets (`env_policy`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Kept by `env_policy="scrub"`: what a process needs to run and to behave
# like the user's session, the launcher's own settings and the interpreter's.
ALLOW_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM",
    "TMPDIR", "TEMP", "TMP", "PWD", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "SYSTEMROOT",
})
ALLOW_PREFIXES = ("LC_", "LAUNCHER_", "PYTHON")
# Never kept by the default allow-list, even if a name above would match
# (`PYTHON_API_KEY`): only an explicit `env_allow` name lets these through.
SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "APIKEY", "CREDENTIAL",
                  "PRIVATE_KEY", "AUTH")

POLICIES = ("inherit", "scrub")


def looks_secret(name: str) -> bool:
    upper = name.upper()
    return upper.startswith("AWS_") or any(m in upper for m in SECRET_MARKERS)


def worker_environ(environ: Mapping[str, str], policy: str, allow: Iterable[str] = ()) -> dict[str, str]:
    """The environment workers start from, before the launcher adds its own.

    `allow` holds names (`"WANDB_MODE"`) or prefixes ending in `*` (`"MYAPP_*"`).
    """
    if policy not in POLICIES:
        raise ValueError(f"env_policy must be one of {', '.join(map(repr, POLICIES))}, not {policy!r}")
    if policy == "inherit":
        return dict(environ)
    names = {a for a in allow if not a.endswith("*")}
    prefixes = tuple(a[:-1] for a in allow if a.endswith("*"))
    out = {}
    for key, value in environ.items():
        explicit = key in names or (prefixes and key.startswith(prefixes))
        default = key in ALLOW_NAMES or key.startswith(ALLOW_PREFIXES)
        if explicit or (default and not looks_secret(key)):
            out[key] = value
    return out
