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
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from launcher.cache import TREE_FORMAT, CacheLayout
from launcher.errors import UsageError

if TYPE_CHECKING:
    from launcher.config import Settings
    from launcher.uvconfig import UvConfig


@dataclass(frozen=True)
class Spec:
    requirements: tuple[str, ...]
    find_links: tuple[str, ...] = ()
    index_url: str | None = None
    offline: bool = False
    sources: tuple[str, ...] = field(default=(), compare=False)
    constraints: tuple[str, ...] = ()
    source_builds: bool = False  # build = "always": resolve with sdists from the start
    # The job's pins (launcher.resolve): one version per package for every
    # ABI ("name==version"), and the exact list each ABI the launch knew
    # installs.  An ABI met later installs `pins` (see resolve.for_abi).
    pins: tuple[str, ...] = ()
    abi_pins: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The user's uv configuration in effect (launcher.uvconfig): its identity
    # names the tree (two indexes never share one); `isolated` ignores it.
    uv_config: str | None = None
    isolated: bool = False
    workdir: str | None = field(default=None, compare=False)  # where uv discovers that configuration

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
        if self.uv_config is not None:
            doc["uv_config"] = self.uv_config
        if self.pins:
            # The job-wide pins, and only where an ABI's list departs from
            # them (a package the ABIs could not agree on): a tree is keyed
            # by what it holds, so launches that know different sets of
            # interpreters but pin the same versions share their trees.
            doc["pins"] = list(self.pins)
            job = {_canonical(p) for p in self.pins}
            departs = {abi: sorted(p for p in pins if _canonical(p) not in job) for abi, pins in self.abi_pins}
            if any(departs.values()):
                doc["departs"] = {abi: p for abi, p in departs.items() if p}
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
            pins=tuple(data.get("pins", ())),
            abi_pins=tuple((abi, tuple(p)) for abi, p in data.get("abi_pins", ())),
            uv_config=data.get("uv_config"),
            isolated=bool(data.get("isolated", False)),
            workdir=data.get("workdir"),
        )

    @property
    def base(self) -> Spec:
        """This requirement set without pins: what a resolution answers."""
        return replace(self, pins=(), abi_pins=())

    def pinned_for(self, abi_key: str) -> tuple[str, ...] | None:
        """The exact list the launch resolved for this ABI (None: not one it knew)."""
        return dict(self.abi_pins).get(abi_key)

    def save(self, layout: CacheLayout) -> Path:
        from launcher.cache import safety

        path = layout.spec_file(self.hash)
        merged = self._merged_with(safety.read_file(layout.root, "specs", path.name))
        if merged is not None:
            safety.write_file(layout.root, "specs", path.name,  # 0600, through checked directories
                              merged.to_json().encode("utf-8"))
        return path

    def _merged_with(self, raw: bytes | None) -> Spec | None:
        """What to write over the file `raw` of the same hash, or None to keep it.

        Launches that share a tree share its spec file but know different
        interpreters: the file gains the ABI lists it lacks and is otherwise
        kept as it is (its fields outside the hash stay the first launch's),
        so it settles instead of flipping between launches, whose warm paths
        watch it."""
        if raw is None:
            return self
        try:
            old = Spec.from_json(raw.decode("utf-8"))
        except (ValueError, KeyError, TypeError):
            return self  # damaged: ours replaces it
        if old.hash != self.hash:
            return self
        known = dict(old.abi_pins)
        new = [(abi, pins) for abi, pins in self.abi_pins if abi not in known]
        if not new:
            return None
        return replace(old, abi_pins=tuple(sorted((*old.abi_pins, *new))))

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


def _canonical(pin: str) -> str:
    """`Foo_Bar==1.0` -> `foo-bar==1.0` (PEP 503 names), to compare pins."""
    name, sep, rest = pin.partition("==")
    return re.sub(r"[-_.]+", "-", name.strip()).lower() + sep + rest.strip()


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


def spec_for(settings: Settings, cwd: Path, environ: Mapping[str, str] | None = None,
             ) -> tuple[RequirementFiles, Spec | None]:
    """What `settings` ask for, paths taken from `cwd`: the requirements files
    read (each include too) and the spec, or None when nothing was asked for.
    The spec carries the identity of the uv configuration in effect there."""
    files = read_requirement_files([cwd / p for p in settings.with_requirements])
    links = [str(cwd / p) if "://" not in p else p for p in settings.find_links]
    spec = build_spec(settings.with_, files, links, settings.index_url, settings.offline, settings.build)
    if spec is None:
        return files, None
    return files, replace(spec, uv_config=uv_configuration(settings, cwd, environ).identity,
                          isolated=settings.isolated, workdir=str(cwd.absolute()))


def uv_configuration(settings: Settings, cwd: Path, environ: Mapping[str, str] | None = None) -> UvConfig:
    from launcher.uvconfig import discover

    return discover(cwd, os.environ if environ is None else environ, isolated=settings.isolated)
