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
from typing import TYPE_CHECKING

from launcher.cache import TREE_FORMAT, CacheLayout
from launcher.errors import UsageError

if TYPE_CHECKING:
    from launcher.config import Settings


@dataclass(frozen=True)
class Spec:
    requirements: tuple[str, ...]
    find_links: tuple[str, ...] = ()
    index_url: str | None = None
    offline: bool = False
    sources: tuple[str, ...] = field(default=(), compare=False)
    constraints: tuple[str, ...] = ()
    source_builds: bool = False  # build = "always": resolve with sdists from the start

    @property
    def hash(self) -> str:
        doc: dict[str, object] = {
            "format": TREE_FORMAT,
            "requirements": sorted(self.requirements),
            "find_links": list(self.find_links),
            "index_url": self.index_url,
        }
        if self.constraints:  # absent otherwise: existing trees keep their names
            doc["constraints"] = sorted(self.constraints)
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
            constraints=tuple(data.get("constraints", ())),
            source_builds=bool(data.get("source_builds", False)),
        )

    def save(self, layout: CacheLayout) -> Path:
        from launcher.cache import safety

        path = layout.spec_file(self.hash)
        text = self.to_json().encode("utf-8")
        if safety.read_file(layout.root, "specs", path.name) == text:
            return path
        safety.write_file(layout.root, "specs", path.name, text)  # 0600, through checked directories
        return path

    @classmethod
    def load(cls, layout: CacheLayout, spec_hash: str) -> Spec:
        from launcher.cache import safety

        path = layout.spec_file(spec_hash)
        try:
            raw = safety.read_file(layout.root, "specs", path.name)
            if raw is None:
                if os.path.lexists(path):
                    raise ValueError("not a private file of ours")  # another user's, or loose: never read
                raise FileNotFoundError(path)
            return cls.from_json(raw.decode("utf-8"))
        except FileNotFoundError:
            raise UsageError(
                f"no requirement set {spec_hash} in {layout.specs}",
                fix="re-run the job with 'launcher run' so it records one",
            ) from None
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError(f"the requirement set {path} is unreadable or damaged",
                             fix=f"rm {path}, then re-run the job with 'launcher run' so it records it again",
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


@dataclass
class RequirementFiles:
    """What a set of requirements files says: requirements, constraints
    (`-c`), and every file read, includes (`-r`, `-c`) followed recursively."""

    requirements: list[tuple[str, str]] = field(default_factory=list)
    constraints: list[tuple[str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def read(self, path: Path, *, as_constraints: bool = False) -> None:
        if path in self.files:
            return  # an include cycle, or a file included twice
        self.files.append(path)
        for origin, line in _lines(path):
            option, _, rest = line.partition(" ")
            if option in ("-r", "--requirement", "-c", "--constraint") and rest.strip():
                self.read(path.parent / rest.strip(),
                          as_constraints=as_constraints or option in ("-c", "--constraint"))
            elif line.startswith("-"):
                raise UsageError(
                    f"unsupported option {line!r} at {origin}",
                    fix="pass installer options to launcher itself (--find-links, --index-url)",
                )
            else:
                (self.constraints if as_constraints else self.requirements).append((line, origin))


def _lines(path: Path) -> list[tuple[str, str]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"cannot read requirements file {path}: {exc.strerror or exc}",
            fix="check the path given to --with-requirements (and its -r/-c lines)",
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"requirements file {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x})",
                         fix="save it as UTF-8") from None
    out = []
    for no, full in enumerate(text.splitlines(), 1):
        line = full.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append((f"{path}:{no}", line))
    return out


def read_requirement_files(paths: list[Path]) -> RequirementFiles:
    """Every given file, and what each includes."""
    files = RequirementFiles()
    for p in paths:
        files.read(Path(p))
    return files


def build_spec(
    with_: list[str],
    requirement_files: list[Path] | RequirementFiles,
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
    files = requirement_files if isinstance(requirement_files, RequirementFiles) \
        else read_requirement_files(requirement_files)
    pairs.extend(files.requirements)
    if not pairs:
        return None
    reqs = tuple(dict.fromkeys(normalize_requirement(r, origin=o) for r, o in pairs))
    return Spec(
        requirements=reqs,
        find_links=tuple(links),
        index_url=index_url,
        offline=offline,
        sources=tuple(o for _, o in pairs),
        constraints=tuple(dict.fromkeys(normalize_requirement(r, origin=o) for r, o in files.constraints)),
        source_builds=build == "always",
    )


def spec_for(settings: Settings, cwd: Path) -> tuple[RequirementFiles, Spec | None]:
    """What `settings` ask for, paths taken from `cwd`: the requirements files
    read (each include too) and the spec, or None when nothing was asked for."""
    files = read_requirement_files([cwd / p for p in settings.with_requirements])
    links = [str(cwd / p) if "://" not in p else p for p in settings.find_links]
    return files, build_spec(settings.with_, files, links, settings.index_url, settings.offline, settings.build)
