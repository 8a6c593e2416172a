"""The requirement set a runtime tree is built from, and its hash.

The hash names the tree, so it covers exactly what changes the tree's
content: the normalised requirements, where packages may come from, and the
tree format.  `--offline` only changes how the installer may fetch, so it is
left out.  Of the build policy only "always" is in: it lets the installer pick
a newer release it must compile over an older one with wheels, a different
tree; "never" and "fallback" resolve binary-only first and differ only in
whether a failure may retry with builds, so a tree either of them publishes
is the same tree.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from launcher.cache import TREE_FORMAT, CacheLayout
from launcher.errors import UsageError


@dataclass(frozen=True)
class Spec:
    requirements: tuple[str, ...]
    find_links: tuple[str, ...] = ()
    index_url: str | None = None
    offline: bool = False
    sources: tuple[str, ...] = field(default=(), compare=False)
    source_builds: bool = False  # build = "always": resolve with sdists from the start

    @property
    def build_policy(self) -> str | None:
        """"always" when this spec was asked with it, else None (the caller's policy applies)."""
        return "always" if self.source_builds else None

    @property
    def hash(self) -> str:
        doc = {
            "format": TREE_FORMAT,
            "requirements": sorted(self.requirements),
            "find_links": list(self.find_links),
            "index_url": self.index_url,
        }
        if self.source_builds:
            doc["build"] = "always"
        raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()[:12]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Spec:
        data = json.loads(text)
        return cls(
            requirements=tuple(data["requirements"]),
            find_links=tuple(data.get("find_links", ())),
            index_url=data.get("index_url"),
            offline=bool(data.get("offline", False)),
            sources=tuple(data.get("sources", ())),
            source_builds=bool(data.get("source_builds", False)),
        )

    def save(self, layout: CacheLayout) -> Path:
        path = layout.spec_file(self.hash)
        text = self.to_json()
        try:
            if path.read_text() == text:
                return path
        except OSError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, layout: CacheLayout, spec_hash: str) -> Spec:
        path = layout.spec_file(spec_hash)
        try:
            return cls.from_json(path.read_text())
        except FileNotFoundError:
            raise UsageError(
                f"no requirement set {spec_hash} in {layout.specs}",
                fix="re-run the job with 'launcher run' so it records one",
            ) from None


def normalize_requirement(text: str, *, origin: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise UsageError(
            f"invalid requirement {text!r} ({origin}): {str(exc).splitlines()[0]}",
            fix="use a PEP 508 requirement such as 'markupsafe>=3' or 'psutil==7.2.2'",
        ) from None
    return str(req)


def read_requirements_file(path: Path) -> list[tuple[str, str]]:
    """(requirement, origin) pairs from a requirements file; `-r` nests."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UsageError(
            f"cannot read requirements file {path}: {exc.strerror or exc}",
            fix="check the path given to --with-requirements",
        ) from None
    out: list[tuple[str, str]] = []
    for no, raw in enumerate(lines, 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        origin = f"{path}:{no}"
        if line.startswith(("-r ", "--requirement ")):
            out.extend(read_requirements_file(path.parent / line.split(None, 1)[1]))
            continue
        if line.startswith("-"):
            raise UsageError(
                f"unsupported option {line!r} at {origin}",
                fix="pass installer options to launcher itself (--find-links, --index-url)",
            )
        out.append((line, origin))
    return out


def build_spec(
    with_: list[str],
    requirement_files: list[Path],
    find_links: list[str],
    index_url: str | None,
    offline: bool,
    build: str = "fallback",
) -> Spec | None:
    """The validated spec, or None when nothing was asked for."""
    links = []
    for link in find_links:
        if "://" in link:
            links.append(link)
            continue
        p = Path(link).expanduser()
        if not p.exists():
            raise UsageError(
                f"--find-links {link}: no such file or directory",
                fix="point --find-links at a directory of wheels or an index page",
            )
        links.append(str(p.resolve()))
    pairs = [(r, "--with") for r in with_]
    for f in requirement_files:
        pairs.extend(read_requirements_file(Path(f)))
    if not pairs:
        return None
    reqs = tuple(dict.fromkeys(normalize_requirement(r, origin=o) for r, o in pairs))
    return Spec(
        requirements=reqs,
        find_links=tuple(links),
        index_url=index_url,
        offline=offline,
        sources=tuple(o for _, o in pairs),
        source_builds=build == "always",
    )
