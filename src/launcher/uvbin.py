"""Finding the installer: uv from the `uv` PyPI package, never a pip on PATH."""

from __future__ import annotations

import os
import subprocess

from launcher.errors import BuildError


def find_uv() -> str:
    override = os.environ.get("LAUNCHER_UV")
    if override:
        if not os.access(override, os.X_OK):
            raise BuildError(
                f"LAUNCHER_UV={override} is not an executable",
                fix="unset LAUNCHER_UV to use the uv installed with launcher",
            )
        return override
    try:
        from uv import find_uv_bin
    except ImportError:
        raise BuildError(
            "uv is not installed in the launcher's environment",
            fix="reinstall launcher (it depends on the 'uv' package): pip install --force-reinstall launcher",
        ) from None
    try:
        return find_uv_bin()
    except FileNotFoundError:
        raise BuildError(
            "the 'uv' package is installed but its binary is missing",
            fix="pip install --force-reinstall uv",
        ) from None


def uv_version(uv: str) -> str | None:
    try:
        out = subprocess.run([uv, "--version"], capture_output=True, text=True, encoding="utf-8",
                             errors="replace", timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
