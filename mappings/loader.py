"""Load and validate the Annex A catalog and the check → control mapping files.

Why this is strict: every finding Annexa stores carries the controls it was mapped to
and the digest of the mapping in force. A typo in a mapping file (``A.8.51``, a check id
that no connector registers, the same link twice) would silently produce evidence an
auditor cannot trust, so loading refuses anything it does not fully understand and says
exactly where the problem is: file, entry and reason.

Layout (see DESIGN.md, "Mappings")::

    mappings/catalogs/iso27001-2022.toml   the 93 Annex A controls (id, title, theme)
    mappings/controls.toml                 every control's documented part ([[documented]])
    mappings/checks/*.toml                 check → control links ([[link]])
    mappings/**/*.toml                     all of these are read alike, except the
                                           catalogs/ and crosswalks/ folders
    <user dir>/**/*.toml                   the user's own mapping files, same format

A mapping file may contain only::

    [meta]                 # optional
    source = "..."         # optional, string
    description = "..."    # optional, string

    [[link]]
    check = "aws.iam.user_console_mfa"
    control = "A.8.5"
    rationale = "Why this check evidences this control (the control's purpose)."

    [[documented]]
    control = "A.7.1"
    expected_evidence = "What the auditor expects to be shown."
    review_interval_days = 365        # optional: default validity of a recorded document
    automated_sufficient = true       # optional, rare: the checks alone evidence it
    automated_rationale = "Why."      # required with automated_sufficient = true

Every catalog control has exactly one ``[[documented]]`` entry across all files: a
control's status needs both its automated part (the checks linked to it) and its
documented part, unless the entry declares, with a rationale, that the automated part
suffices. A control no check is linked to is *manual*.

Entries are numbered from 1 in error messages (``link[3]`` is the third ``[[link]]``
of the file), because that is how a person counts them in an editor.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import hashlib
import re
import tomllib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = [
    "CATALOG_FILE",
    "CONTROLS_FILE",
    "THEMES",
    "Control",
    "DocumentedPart",
    "Link",
    "MappingError",
    "MappingIndex",
    "builtin_dir",
    "control_sort_key",
    "load_mappings",
    "validate_mappings",
]

THEMES: tuple[str, ...] = ("organizational", "people", "physical", "technological")

#: The built-in catalog, relative to :func:`builtin_dir`.
CATALOG_FILE = "catalogs/iso27001-2022.toml"
#: The built-in documented parts of all controls, relative to :func:`builtin_dir`.
CONTROLS_FILE = "controls.toml"

# Folders under mappings/ that hold something other than mapping files: catalogs are
# loaded separately, crosswalks (to other frameworks) have their own format.
_SKIPPED_DIRS = frozenset({"catalogs", "crosswalks"})

# Annex A control ids: "A.<clause>.<number>", no leading zeros, no padding.
_CONTROL_ID_RE = re.compile(r"A\.[1-9][0-9]*\.[1-9][0-9]*")
# Check ids are dotted names such as "aws.iam.user_mfa_enabled"; no whitespace or
# punctuation that would make them ambiguous in CLI output and SQL filters.
_CHECK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9][A-Za-z0-9_-]*)*")

_CATALOG_TOP_KEYS = ("catalog", "control")
_CATALOG_META_KEYS = ("id", "title")
_CONTROL_KEYS = ("id", "title", "theme")
_MAPPING_TOP_KEYS = ("documented", "link", "meta")
_META_KEYS = ("description", "source")
_LINK_KEYS = ("check", "control", "rationale")
_DOCUMENTED_KEYS = (
    "control",
    "expected_evidence",
    "review_interval_days",
    "automated_sufficient",
    "automated_rationale",
)
_DOCUMENTED_REQUIRED = ("control", "expected_evidence")
# A recorded document valid for more than ten years is a typo, not a review cycle.
_MAX_REVIEW_DAYS = 3660

# Version tag mixed into the digest so that a change of the digest's own recipe can
# never collide with a digest computed the old way.
_DIGEST_TAG = b"annexa-mappings-digest-v1\n"

_WHOLE_FILE = "<file>"
_WHOLE_DIR = "<dir>"


class MappingError(ValueError):
    """A catalog or mapping file is invalid.

    Carries the three things a person needs to fix it without reading code: which
    file, which entry in it, and what is wrong.
    """

    def __init__(self, file: str, entry: str, reason: str) -> None:
        self.file = file
        self.entry = entry
        self.reason = reason
        super().__init__(f"{file}: {entry}: {reason}")

    def __reduce__(self) -> tuple[type[MappingError], tuple[str, str, str]]:
        # Keep the exception picklable (multiprocessing, logging handlers) despite
        # the three-argument constructor.
        return (type(self), (self.file, self.entry, self.reason))


@dataclass(frozen=True)
class Control:
    """One Annex A control as listed in the catalog."""

    id: str
    title: str
    theme: str


@dataclass(frozen=True)
class DocumentedPart:
    """A control's documented part: what an auditor expects to see besides the checks.

    ``automated_sufficient`` is true only where the mapping declares, with
    ``rationale``, that the control's automated part alone evidences it (ISO/IEC
    27002:2022 expects no documented information of its own there). Otherwise a
    control needs a recorded, valid document as well as passing checks.
    ``review_interval_days``, when set, is the default validity of a recorded document:
    the review or test cadence the guidance expects.
    """

    control: str
    expected_evidence: str
    automated_sufficient: bool
    rationale: str | None
    review_interval_days: int | None
    file: str

    @property
    def review_interval(self) -> _dt.timedelta | None:
        """``review_interval_days`` as a timedelta (None when not declared)."""
        if self.review_interval_days is None:
            return None
        return _dt.timedelta(days=self.review_interval_days)


@dataclass(frozen=True)
class Link:
    """One check → control mapping, with why the check evidences the control."""

    check: str
    control: str
    rationale: str
    file: str


def control_sort_key(control_id: str) -> tuple[tuple[int, int, str], ...]:
    """Natural ordering key: A.5.2 < A.5.10 < A.6.1 (lexicographic order would not be).

    Works on any string (malformed ids sort deterministically instead of raising),
    so it is safe as a ``sorted`` key for ids read from a database.
    """
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", control_id)
        if part
    )


def builtin_dir() -> Path:
    """Directory of the shipped mappings (this package), wherever it is installed."""
    return Path(__file__).resolve().parent


@dataclass(frozen=True)
class MappingIndex:
    """Everything loaded: the catalog, the links, every control's documented part, digest.

    ``digest`` identifies the exact mapping content; findings store it so an auditor
    can tell which mapping a control status was computed under. ``parts`` holds the
    documented part of every catalog control (the loader refuses a mapping without one).
    """

    catalog: dict[str, Control]
    links: tuple[Link, ...]
    parts: dict[str, DocumentedPart]
    digest: str
    files: tuple[str, ...]
    _by_check: dict[str, tuple[str, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _by_control: dict[str, tuple[str, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _manual: Mapping[str, DocumentedPart] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        by_check: dict[str, set[str]] = {}
        by_control: dict[str, set[str]] = {}
        for link in self.links:
            by_check.setdefault(link.check, set()).add(link.control)
            by_control.setdefault(link.control, set()).add(link.check)
        # Frozen dataclass: the lookup tables are derived once, here.
        object.__setattr__(
            self,
            "_by_check",
            {k: tuple(sorted(v, key=control_sort_key)) for k, v in by_check.items()},
        )
        object.__setattr__(
            self, "_by_control", {k: tuple(sorted(v)) for k, v in by_control.items()}
        )
        object.__setattr__(
            self,
            "_manual",
            MappingProxyType(
                {cid: part for cid, part in self.parts.items() if cid not in by_control}
            ),
        )

    def controls_for(self, check_id: str) -> tuple[str, ...]:
        """Controls a check's findings count towards, in natural order (empty if none)."""
        return self._by_check.get(check_id, ())

    def checks_for(self, control_id: str) -> tuple[str, ...]:
        """Checks that evidence a control, sorted by check id (empty if none)."""
        return self._by_control.get(control_id, ())

    def documented(self, control_id: str) -> DocumentedPart:
        """The control's documented part; KeyError for an id outside the catalog."""
        try:
            return self.parts[control_id]
        except KeyError:
            raise KeyError(f"unknown control {control_id!r} (not in the catalog)") from None

    def is_manual(self, control_id: str) -> bool:
        """Whether no check is linked to the control: its documented part is all there is."""
        return control_id in self.catalog and control_id not in self._by_control

    @property
    def manual(self) -> Mapping[str, DocumentedPart]:
        """Documented parts of the manual controls (those no check is linked to)."""
        return self._manual


def load_mappings(
    extra_dirs: Sequence[str | Path] = (),
    known_checks: Collection[str] | None = None,
) -> MappingIndex:
    """Load the built-in catalog and mappings plus the user's directories.

    Raises :class:`MappingError` on the first problem found (files in load order,
    entries in file order). ``known_checks``, when given, makes a link to a check id
    outside it an error: the collector passes the registered checks so a mapping can
    never point at a check that does not exist.
    """
    loader = _Loader(known_checks, fail_fast=True)
    index = loader.run(extra_dirs)
    assert index is not None  # fail_fast raised otherwise
    return index


def validate_mappings(
    extra_dirs: Sequence[str | Path] = (),
    known_checks: Collection[str] | None = None,
) -> tuple[MappingError, ...]:
    """Every problem in the mappings, not just the first (empty tuple: all valid).

    For ``annexa mappings validate``: fixing a file is quicker when all of its errors
    are listed at once. If the catalog itself is invalid only catalog errors are
    returned, since every control reference would be judged against a broken catalog.
    """
    loader = _Loader(known_checks, fail_fast=False)
    loader.run(extra_dirs)
    return tuple(loader.errors)


# --------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Source:
    """One file to load: its display name, its digest name and its path on disk."""

    name: str  # what errors and MappingIndex.files show
    digest_name: str  # location-independent name mixed into the digest
    path: Path


class _Loader:
    """One load: accumulates results and errors (or raises at the first one)."""

    def __init__(self, known_checks: Collection[str] | None, *, fail_fast: bool) -> None:
        self.known_checks = known_checks
        self.fail_fast = fail_fast
        self.errors: list[MappingError] = []
        self.catalog: dict[str, Control] = {}
        self.catalog_id = ""
        self.links: list[Link] = []
        self.link_origin: dict[tuple[str, str], str] = {}
        self.parts: dict[str, DocumentedPart] = {}
        self.part_origin: dict[str, tuple[str, str]] = {}  # control → (file, entry)
        # A file that could not be read or parsed hides its entries: the completeness
        # check would then report controls as missing that are merely unreadable.
        self.unreadable = False
        self.loaded: list[tuple[_Source, bytes]] = []

    # -- error handling

    def fail(self, file: str, entry: str, reason: str) -> None:
        """Record a problem; in fail-fast mode stop the load right here."""
        error = MappingError(file, entry, reason)
        if self.fail_fast:
            raise error
        self.errors.append(error)

    # -- driver

    def run(self, extra_dirs: Sequence[str | Path]) -> MappingIndex | None:
        root = builtin_dir()
        catalog_source = _Source(CATALOG_FILE, f"builtin/{CATALOG_FILE}", root / CATALOG_FILE)
        before = len(self.errors)
        self.load_catalog(catalog_source)
        if len(self.errors) > before:
            return None

        sources = [
            _Source(rel, f"builtin/{rel}", path) for rel, path in _toml_files(root, _SKIPPED_DIRS)
        ]
        for raw_dir in extra_dirs:
            sources.extend(self.user_sources(raw_dir))
        for source in sources:
            self.load_mapping_file(source)
        if not self.unreadable:
            self.check_documented_parts()
        if self.errors:
            return None

        return MappingIndex(
            catalog=dict(sorted(self.catalog.items(), key=lambda kv: control_sort_key(kv[0]))),
            links=tuple(self.links),
            parts=dict(sorted(self.parts.items(), key=lambda kv: control_sort_key(kv[0]))),
            digest=_digest(self.loaded),
            files=tuple(source.name for source, _ in self.loaded),
        )

    def user_sources(self, raw_dir: str | Path) -> list[_Source]:
        directory = Path(raw_dir)
        shown = str(raw_dir)
        if not directory.exists():
            self.fail(shown, _WHOLE_DIR, "mapping directory does not exist")
            return []
        if not directory.is_dir():
            self.fail(shown, _WHOLE_DIR, "not a directory (mapping directories hold *.toml files)")
            return []
        # Digest names are relative to the user dir, so moving the directory does not
        # change the digest; changing any byte of any file does.
        return [
            _Source(str(path), f"user/{rel}", path)
            for rel, path in _toml_files(directory, frozenset())
        ]

    def read(self, source: _Source) -> dict[str, Any] | None:
        """Bytes → TOML document, recording the bytes for the digest."""
        try:
            data = source.path.read_bytes()
        except OSError as exc:
            self.unreadable = True
            self.fail(source.name, _WHOLE_FILE, f"cannot read file: {exc.strerror or exc}")
            return None
        self.loaded.append((source, data))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.unreadable = True
            self.fail(
                source.name,
                _WHOLE_FILE,
                f"not valid UTF-8 (byte {exc.start}: {data[exc.start : exc.start + 1]!r}); "
                "TOML files must be UTF-8",
            )
            return None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            self.unreadable = True
            self.fail(source.name, _WHOLE_FILE, f"TOML syntax error: {exc}")
            return None

    # -- catalog

    def read_tables(
        self, source: _Source, allowed: Sequence[str], hint: Callable[[str], str] | None = None
    ) -> dict[str, Any] | None:
        """The file's document (None if unreadable), each top-level key outside
        ``allowed`` reported, followed by ``hint(key)`` when that says more."""
        doc = self.read(source)
        for key in doc or ():
            if key not in allowed:
                more = hint(key) if hint else ""
                reason = _unknown_key(key, allowed, "top-level key") + more
                self.fail(source.name, _WHOLE_FILE, reason)
        return doc

    def load_catalog(self, source: _Source) -> None:
        doc = self.read_tables(source, _CATALOG_TOP_KEYS)
        if doc is None:
            return
        file = source.name

        meta = doc.get("catalog")
        if meta is None:
            self.fail(file, _WHOLE_FILE, "missing [catalog] table (id, title)")
        elif not isinstance(meta, dict):
            self.fail(file, "catalog", f"must be a table, got {_toml_type(meta)}")
        else:
            fields = self.fields(file, "catalog", meta, _CATALOG_META_KEYS, _CATALOG_META_KEYS)
            if fields is not None:
                self.catalog_id = fields["id"]

        if "control" not in doc or doc["control"] == []:
            self.fail(file, _WHOLE_FILE, "the catalog lists no [[control]] entries")
        controls = list(self.array_of_tables(file, doc, "control"))
        seen: dict[str, str] = {}
        for entry, item in controls:
            fields = self.fields(file, entry, item, _CONTROL_KEYS, _CONTROL_KEYS)
            if fields is None:
                continue
            control_id, theme = fields["id"], fields["theme"]
            if not _CONTROL_ID_RE.fullmatch(control_id):
                self.fail(file, entry, f"malformed control id {control_id!r} (expected like A.5.1)")
                continue
            if theme not in THEMES:
                self.fail(
                    file,
                    entry,
                    f"unknown theme {theme!r} for {control_id} (expected one of: "
                    f"{', '.join(THEMES)})",
                )
                continue
            if control_id in seen:
                self.fail(
                    file,
                    entry,
                    f"duplicate control id {control_id} (first defined at {seen[control_id]})",
                )
                continue
            seen[control_id] = entry
            self.catalog[control_id] = Control(id=control_id, title=fields["title"], theme=theme)

    # -- mapping files

    def load_mapping_file(self, source: _Source) -> None:
        doc = self.read_tables(source, _MAPPING_TOP_KEYS, _mapping_key_hint)
        if doc is None:
            return
        file = source.name

        if "meta" in doc:
            meta = doc["meta"]
            if not isinstance(meta, dict):
                self.fail(file, "meta", f"must be a table, got {_toml_type(meta)}")
            else:
                self.fields(file, "meta", meta, _META_KEYS, ())

        for entry, item in self.array_of_tables(file, doc, "link"):
            self.load_link(file, entry, item)
        for entry, item in self.array_of_tables(file, doc, "documented"):
            self.load_documented(file, entry, item)

    def load_link(self, file: str, index_entry: str, item: dict[str, Any]) -> None:
        check, control = item.get("check"), item.get("control")
        entry = index_entry
        if isinstance(check, str) and isinstance(control, str) and check and control:
            entry = f"{index_entry} ({check} → {control})"
        fields = self.fields(file, entry, item, _LINK_KEYS, _LINK_KEYS)
        if fields is None:
            return
        check, control = fields["check"], fields["control"]
        if not self.valid_control(file, entry, control):
            return
        if not _CHECK_ID_RE.fullmatch(check):
            self.fail(
                file,
                entry,
                f"malformed check id {check!r} "
                "(expected a dotted name like aws.iam.user_mfa_enabled)",
            )
            return
        if self.known_checks is not None and check not in self.known_checks:
            self.fail(file, entry, f"unknown check {check!r}{_suggest(check, self.known_checks)}")
            return
        where = f"{file}: {entry}"
        first = self.link_origin.get((check, control))
        if first is not None:
            self.fail(
                file, entry, f"duplicate link {check} → {control}: already defined at {first}"
            )
            return
        self.link_origin[(check, control)] = where
        self.links.append(
            Link(check=check, control=control, rationale=fields["rationale"], file=file)
        )

    def load_documented(self, file: str, index_entry: str, item: dict[str, Any]) -> None:
        control = item.get("control")
        entry = index_entry
        if isinstance(control, str) and control:
            entry = f"{index_entry} ({control})"
        text_keys = ("control", "expected_evidence", "automated_rationale")
        ok = self.keys_known(file, entry, item, _DOCUMENTED_KEYS, _DOCUMENTED_REQUIRED)
        for key in text_keys:
            if key in item and not self.nonempty_text(file, entry, key, item[key]):
                ok = False
        days = item.get("review_interval_days")
        if days is not None and (
            isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= _MAX_REVIEW_DAYS
        ):
            self.fail(
                file,
                entry,
                f"'review_interval_days' must be a whole number of days from 1 to "
                f"{_MAX_REVIEW_DAYS}, got {days!r} ({_toml_type(days)})",
            )
            ok = False
        sufficient = item.get("automated_sufficient", False)
        if not isinstance(sufficient, bool):
            self.fail(
                file,
                entry,
                f"'automated_sufficient' must be true or false, got {_toml_type(sufficient)}",
            )
            ok = False
        elif sufficient and "automated_rationale" not in item:
            self.fail(
                file,
                entry,
                "automated_sufficient = true needs 'automated_rationale': say why the checks "
                "alone evidence the control",
            )
            ok = False
        elif not sufficient and "automated_rationale" in item:
            self.fail(
                file,
                entry,
                "'automated_rationale' is only meaningful with automated_sufficient = true",
            )
            ok = False
        if not ok:
            return
        if not self.valid_control(file, entry, control):
            return
        first = self.part_origin.get(control)
        if first is not None:
            self.fail(
                file,
                entry,
                f"duplicate documented part for {control}: already defined at "
                f"{first[0]}: {first[1]}",
            )
            return
        self.part_origin[control] = (file, entry)
        self.parts[control] = DocumentedPart(
            control=control,
            expected_evidence=item["expected_evidence"],
            automated_sufficient=sufficient,
            rationale=item.get("automated_rationale"),
            review_interval_days=days,
            file=file,
        )

    def check_documented_parts(self) -> None:
        """Every control declares its documented part; 'automated suffices' needs checks."""
        missing = [cid for cid in self.catalog if cid not in self.parts]
        if missing:
            self.fail(
                CONTROLS_FILE,
                _WHOLE_FILE,
                f"no [[documented]] entry for {len(missing)} control(s): "
                f"{', '.join(sorted(missing, key=control_sort_key))} "
                "(every Annex A control must declare its documented part)",
            )
        linked = {link.control for link in self.links}
        for cid, part in sorted(self.parts.items(), key=lambda kv: control_sort_key(kv[0])):
            if part.automated_sufficient and cid not in linked:
                file, entry = self.part_origin[cid]
                self.fail(
                    file,
                    entry,
                    f"automated_sufficient = true but no check is linked to {cid}: "
                    "an automated part that does not exist cannot suffice",
                )

    # -- shared validation

    def valid_control(self, file: str, entry: str, control: str) -> bool:
        if not _CONTROL_ID_RE.fullmatch(control):
            self.fail(file, entry, f"malformed control id {control!r} (expected like A.5.1)")
            return False
        if control not in self.catalog:
            self.fail(
                file,
                entry,
                f"unknown control {control} (not in catalog {self.catalog_id or CATALOG_FILE})",
            )
            return False
        return True

    def nonempty_text(self, file: str, entry: str, key: str, value: object) -> bool:
        if not isinstance(value, str):
            self.fail(file, entry, f"{key!r} must be a string, got {_toml_type(value)}")
            return False
        if not value.strip():
            self.fail(file, entry, f"{key!r} must not be empty")
            return False
        return True

    def array_of_tables(
        self, file: str, doc: Mapping[str, Any], key: str
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (entry label, table) for each ``[[key]]``; wrong shapes are errors."""
        value = doc.get(key)
        if value is None:
            return
        if not isinstance(value, list):
            self.fail(file, key, f"must be an array of tables ([[{key}]]), got {_toml_type(value)}")
            return
        for number, item in enumerate(value, start=1):
            entry = f"{key}[{number}]"
            if not isinstance(item, dict):
                self.fail(file, entry, f"must be a table, got {_toml_type(item)}")
                continue
            yield entry, item

    def keys_known(self, file: str, entry: str, table: Mapping[str, Any],
                   allowed: Sequence[str], required: Sequence[str]) -> bool:
        """Whether ``table`` has every ``required`` key and no key outside ``allowed``;
        each problem is reported (all of them, not the first)."""
        ok = True
        for key in table:
            if key not in allowed:
                self.fail(file, entry, _unknown_key(key, allowed, "key"))
                ok = False
        for key in required:
            if key not in table:
                self.fail(file, entry, f"missing key {key!r}")
                ok = False
        return ok

    def fields(
        self,
        file: str,
        entry: str,
        table: Mapping[str, Any],
        allowed: Sequence[str],
        required: Sequence[str],
    ) -> dict[str, str] | None:
        """Check a table holds only known, non-empty string fields; None if it does not."""
        ok = self.keys_known(file, entry, table, allowed, required)
        result: dict[str, str] = {}
        for key in allowed:
            if key not in table:
                continue
            value = table[key]
            if not isinstance(value, str):
                self.fail(file, entry, f"{key!r} must be a string, got {_toml_type(value)}")
                ok = False
            elif not value.strip():
                self.fail(file, entry, f"{key!r} must not be empty")
                ok = False
            else:
                result[key] = value
        return result if ok else None


def _toml_files(root: Path, skipped_dirs: frozenset[str]) -> list[tuple[str, Path]]:
    """``*.toml`` files under root as (posix relative name, path), sorted by name.

    Hidden files and folders (editor back-ups, ``.git``) are ignored, as are the named
    folders, so that sorting — and therefore load order and error order — is the same
    on every machine.
    """
    found: list[tuple[str, Path]] = []
    for path in root.rglob("*.toml"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if any(part in skipped_dirs for part in rel.parts[:-1]):
            continue
        if path.is_file():
            found.append((rel.as_posix(), path))
    found.sort(key=lambda item: item[0])
    return found


def _digest(loaded: Sequence[tuple[_Source, bytes]]) -> str:
    """sha256 over (name, bytes) of every loaded file, sorted, length-prefixed.

    Length prefixes make the encoding unambiguous, so no two different sets of files
    can produce the same byte stream.
    """
    hasher = hashlib.sha256(_DIGEST_TAG)
    for name, data in sorted((source.digest_name.encode("utf-8"), data) for source, data in loaded):
        hasher.update(len(name).to_bytes(8, "big"))
        hasher.update(name)
        hasher.update(len(data).to_bytes(8, "big"))
        hasher.update(data)
    return hasher.hexdigest()


def _mapping_key_hint(key: str) -> str:
    """What a top-level key a mapping file may not have became, if it used to be valid."""
    if key in _CATALOG_TOP_KEYS:
        return "; catalogs live only in the built-in mappings/catalogs/ folder"
    if key == "manual":
        return (
            "; [[manual]] entries became [[documented]]: every control already "
            f"declares its documented part in the built-in {CONTROLS_FILE}"
        )
    return ""


def _unknown_key(key: str, allowed: Sequence[str], what: str) -> str:
    return f"unknown {what} {key!r} (allowed: {', '.join(sorted(allowed))})"


def _suggest(check: str, known: Collection[str]) -> str:
    """A 'did you mean' hint: most unknown checks are typos of a real one."""
    try:
        candidates = [k for k in known if isinstance(k, str)]
    except TypeError:  # a container that supports `in` but not iteration
        return ""
    close = difflib.get_close_matches(check, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: TOML's names of the parsed types, most specific first (a bool is an int, a datetime
#: a date).
_TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (str, "string"),
    (int, "integer"),
    (float, "float"),
    (dict, "table"),
    (list, "array"),
    (_dt.datetime, "datetime"),
    (_dt.date, "date"),
    (_dt.time, "time"),
)


def _toml_type(value: object) -> str:
    """TOML's name for a parsed value's type, for error messages people recognise."""
    return next((name for t, name in _TOML_TYPES if isinstance(value, t)), type(value).__name__)
