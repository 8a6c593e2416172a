"""doctor judges the job it is asked about (issue 17, item 7): a failed build
of another requirement set is history (an ok finding that names it), not a
FAIL, while the asked-about set's own failures still fail."""

from __future__ import annotations

from pathlib import Path

from conftest import installs, launcher, offline_with, unreachable_with
from launcher.doctor.models import Report


def _doctor(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, Report]:
    proc = launcher("doctor", "--json", *args, env=env, cwd=cwd, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, Report.model_validate_json(proc.stdout)


def test_a_healthy_job_passes_right_after_another_requirement_set_failed(py311: str, env: dict[str, str],
                                                                          cache_dir: Path, tmp_path: Path) -> None:
    good = launcher("run", *offline_with("six"), "--", py311, "-c", "import six", env=env, cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    bad = launcher("run", *unreachable_with("doesnotexist-pkg"), "--", py311, "-c", "pass", env=env, cwd=tmp_path)
    assert installs(cache_dir, "failed"), bad.stderr

    rc, report = _doctor(*offline_with("six"), "--python", py311, env=env, cwd=tmp_path)
    assert rc == 0, [f.message for f in report.findings() if f.status != "ok"]
    [history] = report.findings("failure")
    assert history.status == "ok" and history.message.startswith("history:")
    assert "doesnotexist-pkg" in history.message and "does not affect this job" in history.message
    assert history.facts["other_requirement_set"] is True

    # The failed set itself, asked about: a failure (under its interpreter), as before.
    rc, report = _doctor(*unreachable_with("doesnotexist-pkg"), "--python", py311, env=env, cwd=tmp_path)
    assert rc == 1 and [f.status for f in report.findings("failure")] == ["fail"]
    # Plain doctor (no requirement set): the cache's recent failure still fails.
    rc, _ = _doctor(env=env, cwd=tmp_path)
    assert rc == 1
