"""Tests for the Annex A catalog, the shipped documented parts and the mapping loader.

Bad mapping files are written into tmp_path and passed as user directories, the same
way a user extends the shipped mappings. Catalog validation is exercised by pointing
the loader's built-in directory at a copy in tmp_path.
"""

from __future__ import annotations

import pickle
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

import mappings
from mappings import (
    CONTROLS_FILE,
    THEMES,
    DocumentedPart,
    MappingError,
    MappingIndex,
    builtin_dir,
    control_sort_key,
    load_mappings,
    validate_mappings,
)
from mappings import loader as loader_module

CHECK_A = "test.iam.user_mfa_enabled"
CHECK_B = "test.s3.bucket_encrypted"
CHECK_C = "test.trail.enabled"


@pytest.fixture(scope="module")
def builtin() -> MappingIndex:
    return load_mappings()


@pytest.fixture
def known(builtin: MappingIndex) -> set[str]:
    """Made-up checks plus whatever the shipped mapping files link to.

    Other mapping files (e.g. the AWS one) ship links of their own; including their
    checks keeps these tests independent of which connectors exist.
    """
    return {CHECK_A, CHECK_B, CHECK_C} | {link.check for link in builtin.links}


def write(directory: Path, name: str, text: str | bytes) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def link(check: str, control: str, rationale: str = "Because.") -> str:
    return f'[[link]]\ncheck = "{check}"\ncontrol = "{control}"\nrationale = "{rationale}"\n\n'


def load_error(extra: Path | str, known_checks: set[str] | None = None) -> MappingError:
    with pytest.raises(MappingError) as info:
        load_mappings([extra], known_checks=known_checks)
    return info.value


# --------------------------------------------------------------------------- catalog


def test_catalog_has_93_controls_per_theme(builtin: MappingIndex) -> None:
    assert len(builtin.catalog) == 93
    counts = Counter(control.theme for control in builtin.catalog.values())
    assert counts == {"organizational": 37, "people": 8, "physical": 14, "technological": 34}
    for prefix, theme, count in (
        ("A.5", THEMES[0], 37),
        ("A.6", THEMES[1], 8),
        ("A.7", THEMES[2], 14),
        ("A.8", THEMES[3], 34),
    ):
        ids = [f"{prefix}.{n}" for n in range(1, count + 1)]
        assert all(builtin.catalog[i].theme == theme for i in ids)


def test_catalog_is_in_natural_order(builtin: MappingIndex) -> None:
    ids = list(builtin.catalog)
    assert ids[:11] == [f"A.5.{n}" for n in range(1, 12)]
    assert ids.index("A.5.9") < ids.index("A.5.10") < ids.index("A.6.1")
    assert ids[-1] == "A.8.34"
    assert ids == sorted(ids, key=control_sort_key)
    assert ids != sorted(ids)  # the natural order really differs from lexicographic


@pytest.mark.parametrize(
    ("control_id", "title"),
    [
        ("A.5.1", "Policies for information security"),
        ("A.5.7", "Threat intelligence"),
        ("A.5.23", "Information security for use of cloud services"),
        ("A.5.30", "ICT readiness for business continuity"),
        ("A.5.34", "Privacy and protection of PII"),
        ("A.5.37", "Documented operating procedures"),
        ("A.6.3", "Information security awareness, education and training"),
        ("A.6.8", "Information security event reporting"),
        ("A.7.4", "Physical security monitoring"),
        ("A.7.14", "Secure disposal or re-use of equipment"),
        ("A.8.1", "User endpoint devices"),
        ("A.8.9", "Configuration management"),
        ("A.8.10", "Information deletion"),
        ("A.8.11", "Data masking"),
        ("A.8.12", "Data leakage prevention"),
        ("A.8.16", "Monitoring activities"),
        ("A.8.20", "Networks security"),
        ("A.8.28", "Secure coding"),
        ("A.8.34", "Protection of information systems during audit testing"),
    ],
)
def test_catalog_titles_are_the_2022_titles(
    builtin: MappingIndex, control_id: str, title: str
) -> None:
    assert builtin.catalog[control_id].title == title
    assert builtin.catalog[control_id].id == control_id


def test_catalog_titles_are_unique_and_trimmed(builtin: MappingIndex) -> None:
    titles = [control.title for control in builtin.catalog.values()]
    assert len(set(titles)) == 93
    assert all(t == t.strip() and "  " not in t for t in titles)


def test_control_sort_key_is_natural_and_total() -> None:
    ids = ["A.8.1", "A.5.10", "A.5.2", "A.10.1", "A.5.1", "weird", ""]
    assert sorted(ids, key=control_sort_key) == [
        "",
        "A.5.1",
        "A.5.2",
        "A.5.10",
        "A.8.1",
        "A.10.1",
        "weird",
    ]


def test_builtin_dir_is_the_package_directory() -> None:
    assert builtin_dir() == Path(mappings.__file__).resolve().parent
    assert (builtin_dir() / "catalogs" / "iso27001-2022.toml").is_file()


# --------------------------------------------------------------------------- documented parts


def documented(control: str, text: str = "Signed review record.", extra: str = "") -> str:
    return f'[[documented]]\ncontrol = "{control}"\nexpected_evidence = "{text}"\n{extra}\n'


def test_every_control_declares_its_documented_part(builtin: MappingIndex) -> None:
    assert list(builtin.parts) == list(builtin.catalog)  # all 93, natural order
    for control_id in builtin.catalog:
        part = builtin.documented(control_id)
        assert isinstance(part, DocumentedPart)
        assert part.control == control_id
        assert part.file == CONTROLS_FILE
        assert len(part.expected_evidence.strip()) > 80, control_id


def test_controls_that_had_no_guidance_now_have_it(builtin: MappingIndex) -> None:
    """The 5 controls with neither check nor manual entry, and the 25 with checks only."""
    for control_id in ("A.5.23", "A.5.28", "A.8.12", "A.8.21", "A.8.23"):
        assert builtin.documented(control_id).review_interval_days == 365
    assert "cloud services" in builtin.documented("A.5.23").expected_evidence
    assert "chain of custody" in builtin.documented("A.5.28").expected_evidence
    assert "leakage" in builtin.documented("A.8.12").expected_evidence.lower()
    for control_id in ("A.5.15", "A.8.13", "A.8.24", "A.8.32", "A.5.24"):
        part = builtin.documented(control_id)
        assert not part.automated_sufficient, control_id
        assert part.review_interval_days == 365, control_id
    assert "policy" in builtin.documented("A.5.15").expected_evidence
    assert "Restore test" in builtin.documented("A.8.13").expected_evidence
    assert "policy on cryptography" in builtin.documented("A.8.24").expected_evidence
    assert "Change management procedure" in builtin.documented("A.8.32").expected_evidence


def test_controls_file_header_does_not_claim_checks_it_lacks() -> None:
    header = (builtin_dir() / CONTROLS_FILE).read_text(encoding="utf-8").split("[meta]")[0]
    assert "A.5.23" not in header and "A.5.28" not in header


def test_automated_part_suffices_only_where_declared_with_a_rationale(
    builtin: MappingIndex,
) -> None:
    sufficient = {c for c, p in builtin.parts.items() if p.automated_sufficient}
    # Rare by design: only where ISO/IEC 27002:2022 expects no documented information.
    assert sufficient == {"A.8.3", "A.8.5"}
    for control_id in sufficient:
        part = builtin.documented(control_id)
        assert part.rationale and "27002" in part.rationale
        assert part.review_interval_days is None
        assert builtin.checks_for(control_id)
    for control_id, part in builtin.parts.items():
        if not part.automated_sufficient:
            assert part.rationale is None, control_id


def test_review_interval(builtin: MappingIndex) -> None:
    import datetime as dt

    assert builtin.documented("A.5.1").review_interval == dt.timedelta(days=365)
    assert builtin.documented("A.5.7").review_interval_days == 90
    assert builtin.documented("A.8.5").review_interval is None


def test_documented_of_unknown_control(builtin: MappingIndex) -> None:
    with pytest.raises(KeyError, match=r"A\.9\.9"):
        builtin.documented("A.9.9")


def test_manual_means_no_check_is_linked(builtin: MappingIndex) -> None:
    for control_id in builtin.catalog:
        assert builtin.is_manual(control_id) == (not builtin.checks_for(control_id))
    assert set(builtin.manual) == {c for c in builtin.catalog if builtin.is_manual(c)}
    assert list(builtin.manual) == sorted(builtin.manual, key=control_sort_key)
    assert builtin.manual["A.7.1"].expected_evidence == (
        builtin.documented("A.7.1").expected_evidence
    )
    assert not builtin.is_manual("A.9.9")


#: People controls the HR sources evidence (issue 16): screening, terms, NDA.
HR_EVIDENCED = {"A.6.1", "A.6.2", "A.6.6"}
#: People controls the awareness and policy connectors evidence (issue 16): A.6.3
#: (knowbe4 training), A.6.8 (knowbe4 phishing reporting), A.6.2 (policy
#: acknowledgements).
AWARENESS_EVIDENCED = {"A.6.2", "A.6.3", "A.6.8"}
#: People controls with a technical part a cloud identity connector observes (issue 15;
#: the check and why it evidences the control are pinned in tests/test_mapping_review.py).
OBSERVED_PEOPLE_CONTROLS = {
    "A.6.7": "entra.tenant.managed_device_required",  # remote working: device requirement
}
#: Physical controls the device checks evidence (issue 16): clear screen (screen lock)
#: and off-premises assets (disk encryption of laptops and phones).
DEVICE_EVIDENCED = {"A.7.7", "A.7.9"}


def test_every_physical_and_other_people_control_is_manual(builtin: MappingIndex) -> None:
    automated = (
        HR_EVIDENCED | AWARENESS_EVIDENCED | DEVICE_EVIDENCED | set(OBSERVED_PEOPLE_CONTROLS)
    )
    for control_id, control in builtin.catalog.items():
        if control.theme in ("people", "physical") and control_id not in automated:
            assert builtin.is_manual(control_id), control_id
    for control_id in automated:
        assert not builtin.is_manual(control_id), control_id
    for control_id in HR_EVIDENCED:
        assert {c.split(".")[0] for c in builtin.checks_for(control_id)} >= {"bamboohr", "hr"}
    for control_id in AWARENESS_EVIDENCED:
        assert {c.split(".")[0] for c in builtin.checks_for(control_id)} & {"knowbe4", "policies"}
    for control_id, check_id in OBSERVED_PEOPLE_CONTROLS.items():
        assert check_id in builtin.checks_for(control_id)
    for control_id in DEVICE_EVIDENCED:
        assert {c.split(".")[0] for c in builtin.checks_for(control_id)} >= {"intune", "jamf"}


def test_documentary_controls_are_manual(builtin: MappingIndex) -> None:
    # A.8.10 left this list: issue 15 links lifecycle/retention checks of log and data
    # stores to it (azure.storage.lifecycle_delete_rule, gcp.storage.bucket_lifecycle_delete).
    # A.5.1 and A.5.37 left it too: issue 16 links the policy document checks to them.
    for control_id in ("A.5.2", "A.5.31", "A.8.34"):
        assert builtin.is_manual(control_id), control_id


def test_configuration_observable_controls_are_not_manual(builtin: MappingIndex) -> None:
    automated = ["A.5.3", "A.5.15", "A.5.16", "A.5.17", "A.5.18", "A.5.25", "A.5.26"]
    automated += [f"A.8.{n}" for n in (2, 3, 4, 5, 7, 9, 13, 14, 15, 16, 20, 24, 25, 28, 32)]
    for control_id in automated:
        assert not builtin.is_manual(control_id), control_id


# --------------------------------------------------------------------------- valid loads


def test_builtin_load_lists_files_and_has_stable_digest(builtin: MappingIndex) -> None:
    assert builtin.files[0] == "catalogs/iso27001-2022.toml"
    assert "controls.toml" in builtin.files
    assert "manual.toml" not in builtin.files
    assert len(builtin.digest) == 64
    assert int(builtin.digest, 16) >= 0
    assert load_mappings().digest == builtin.digest


def test_user_dir_adds_links(tmp_path: Path, known: set[str], builtin: MappingIndex) -> None:
    write(
        tmp_path,
        "extra.toml",
        '[meta]\nsource = "acme"\ndescription = "Acme extras"\n\n'
        + link(CHECK_A, "A.8.5")
        + link(CHECK_A, "A.5.17")
        + link(CHECK_B, "A.8.24"),
    )
    write(tmp_path, "sub/more.toml", link(CHECK_B, "A.8.5"))
    index = load_mappings([tmp_path], known_checks=known)

    assert index.controls_for(CHECK_A) == ("A.5.17", "A.8.5")
    assert index.controls_for(CHECK_B) == ("A.8.5", "A.8.24")
    assert set(index.checks_for("A.8.5")) >= {CHECK_A, CHECK_B}
    assert index.checks_for("A.8.5") == tuple(sorted(index.checks_for("A.8.5")))
    assert index.controls_for("no.such.check") == ()
    assert index.checks_for("A.7.1") == ()
    assert len(index.links) == len(builtin.links) + 4
    added = [lk for lk in index.links if lk.check in (CHECK_A, CHECK_B)]
    assert {lk.file for lk in added} == {
        str(tmp_path / "extra.toml"),
        str(tmp_path / "sub/more.toml"),
    }
    assert index.files[-2:] == (str(tmp_path / "extra.toml"), str(tmp_path / "sub/more.toml"))
    assert index.digest != builtin.digest


def test_old_manual_entries_are_refused_with_a_pointer(tmp_path: Path) -> None:
    write(tmp_path, "manual.toml", '[[manual]]\ncontrol = "A.7.1"\nexpected_evidence = "X."\n')
    error = load_error(tmp_path)
    assert (error.file, error.entry) == (str(tmp_path / "manual.toml"), "<file>")
    assert "unknown top-level key 'manual'" in error.reason
    assert "[[documented]]" in error.reason and "controls.toml" in error.reason


def test_linking_a_check_makes_a_manual_control_automated(
    tmp_path: Path, known: set[str], builtin: MappingIndex
) -> None:
    assert builtin.is_manual("A.8.19")
    write(tmp_path, "x.toml", link(CHECK_A, "A.8.19"))
    index = load_mappings([tmp_path], known_checks=known)
    assert not index.is_manual("A.8.19")
    assert "A.8.19" not in index.manual
    assert CHECK_A in index.checks_for("A.8.19")
    # The documented part stays: a check never replaces the document.
    assert index.documented("A.8.19") == builtin.documented("A.8.19")


def test_without_known_checks_any_well_formed_check_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, "x.toml", link("vendor.thing.is_ok", "A.8.9"))
    assert load_mappings([tmp_path]).controls_for("vendor.thing.is_ok") == ("A.8.9",)


def test_hidden_and_non_toml_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, ".backup.toml", "this is not toml [[[")
    write(tmp_path, ".git/config.toml", "nor this [[[")
    write(tmp_path, "README.md", "# notes")
    write(tmp_path, "ok.toml", link(CHECK_C, "A.8.15"))
    assert load_mappings([tmp_path]).controls_for(CHECK_C) == ("A.8.15",)


def test_empty_user_dir_is_fine(tmp_path: Path, builtin: MappingIndex) -> None:
    index = load_mappings([tmp_path])
    assert index.links == builtin.links
    assert index.files == builtin.files


# --------------------------------------------------------------------------- digest


def test_digest_changes_when_a_user_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path, "x.toml", link(CHECK_A, "A.8.5", "First reason."))
    first = load_mappings([tmp_path]).digest
    assert load_mappings([tmp_path]).digest == first

    path.write_text(link(CHECK_A, "A.8.5", "Second reason."), encoding="utf-8")
    second = load_mappings([tmp_path]).digest
    assert second != first

    path.write_text(link(CHECK_A, "A.8.5", "First reason.") + "# a comment\n", encoding="utf-8")
    assert load_mappings([tmp_path]).digest not in (first, second)


def test_digest_changes_when_a_file_is_renamed_or_added(tmp_path: Path) -> None:
    path = write(tmp_path, "x.toml", link(CHECK_A, "A.8.5"))
    first = load_mappings([tmp_path]).digest
    path.rename(tmp_path / "y.toml")
    renamed = load_mappings([tmp_path]).digest
    assert renamed != first
    write(tmp_path, "z.toml", "# empty mapping file\n")
    assert load_mappings([tmp_path]).digest not in (first, renamed)


def test_digest_does_not_depend_on_where_the_user_dir_lives(tmp_path: Path) -> None:
    write(tmp_path / "one", "x.toml", link(CHECK_A, "A.8.5"))
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    assert load_mappings([tmp_path / "one"]).digest == load_mappings([tmp_path / "two"]).digest


# --------------------------------------------------------------------------- errors


def test_mapping_error_carries_file_entry_reason() -> None:
    error = MappingError("a.toml", "link[1]", "bad")
    assert (error.file, error.entry, error.reason) == ("a.toml", "link[1]", "bad")
    assert str(error) == "a.toml: link[1]: bad"
    assert isinstance(error, ValueError)
    again = pickle.loads(pickle.dumps(error))
    assert (again.file, again.entry, again.reason) == ("a.toml", "link[1]", "bad")


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    write(tmp_path, "bad.toml", '[[link]]\ncheck = "x.y"\ncontrol = A.5.1\n')
    error = load_error(tmp_path)
    assert error.file == str(tmp_path / "bad.toml")
    assert error.entry == "<file>"
    assert "TOML syntax error" in error.reason
    assert "line 3" in error.reason and "column" in error.reason


def test_non_utf8_file(tmp_path: Path) -> None:
    write(tmp_path, "latin1.toml", link(CHECK_A, "A.8.5", "caf\xe9").encode("latin-1"))
    error = load_error(tmp_path)
    assert error.file == str(tmp_path / "latin1.toml")
    assert error.entry == "<file>"
    assert "UTF-8" in error.reason


def test_unknown_top_level_key(tmp_path: Path) -> None:
    write(tmp_path, "x.toml", "version = 2\n" + link(CHECK_A, "A.8.5"))
    error = load_error(tmp_path)
    assert error.entry == "<file>"
    assert "unknown top-level key 'version'" in error.reason


def test_catalog_in_user_dir_is_rejected(tmp_path: Path) -> None:
    write(tmp_path, "cat.toml", '[[control]]\nid = "A.9.1"\ntitle = "X"\ntheme = "people"\n')
    error = load_error(tmp_path)
    assert "unknown top-level key 'control'" in error.reason
    assert "catalogs" in error.reason


def test_unknown_key_in_link(tmp_path: Path) -> None:
    write(tmp_path, "x.toml", link(CHECK_A, "A.8.5") + link(CHECK_B, "A.8.24") + "severity = 1\n")
    error = load_error(tmp_path)
    assert error.entry == f"link[2] ({CHECK_B} → A.8.24)"
    assert "unknown key 'severity'" in error.reason


def test_unknown_key_in_meta(tmp_path: Path) -> None:
    write(tmp_path, "x.toml", '[meta]\nsource = "me"\nowner = "me"\n')
    error = load_error(tmp_path)
    assert (error.entry, error.reason.startswith("unknown key 'owner'")) == ("meta", True)


DAYS = "'review_interval_days' must be a whole number of days"
RATIONALE_ALONE = "'automated_rationale' is only meaningful with automated_sufficient = true"


def wrong_link(fields: str, entry: str, reason: str) -> tuple[str, str, str]:
    """A [[link]] entry with the given field lines, and the entry label and reason it fails with."""
    return f"[[link]]\n{fields}\n", entry, reason


def wrong_documented(control: str, extra: str, reason: str) -> tuple[str, str, str]:
    """A [[documented]] entry for control with one extra field line, and how it fails."""
    return documented(control, extra=extra), f"documented[1] ({control})", reason


@pytest.mark.parametrize(
    ("body", "entry", "reason"),
    [
        wrong_link(
            'check = 5\ncontrol = "A.8.5"\nrationale = "r"',
            "link[1]",
            "'check' must be a string, got integer",
        ),
        wrong_link(
            'check = "a.b"\ncontrol = ["A.8.5"]\nrationale = "r"',
            "link[1]",
            "'control' must be a string, got array",
        ),
        wrong_link(
            'check = "a.b"\ncontrol = "A.8.5"\nrationale = true',
            "link[1] (a.b → A.8.5)",
            "'rationale' must be a string, got boolean",
        ),
        (
            '[[documented]]\ncontrol = "A.5.9"\nexpected_evidence = 1979-05-27\n',
            "documented[1] (A.5.9)",
            "'expected_evidence' must be a string, got date",
        ),
        (
            '[[documented]]\ncontrol = 9\nexpected_evidence = "x"\n',
            "documented[1]",
            "'control' must be a string, got integer",
        ),
        wrong_documented("A.5.9", "review_interval_days = 0", f"{DAYS} from 1 to 3660, got 0"),
        wrong_documented("A.5.9", "review_interval_days = 36500", f"{DAYS} from 1 to 3660"),
        wrong_documented(
            "A.5.9", 'review_interval_days = "365"', f"{DAYS} from 1 to 3660, got '365'"
        ),
        wrong_documented("A.5.9", "review_interval_days = true", DAYS),
        wrong_documented(
            "A.5.9",
            'automated_sufficient = "yes"',
            "'automated_sufficient' must be true or false, got string",
        ),
        wrong_documented(
            "A.8.5",
            "automated_sufficient = true",
            "automated_sufficient = true needs 'automated_rationale'",
        ),
        wrong_documented("A.8.5", 'automated_rationale = "why"', RATIONALE_ALONE),
        wrong_documented(
            "A.8.5", "automated_sufficient = false\nautomated_rationale = 'w'", RATIONALE_ALONE
        ),
        ("[meta]\nsource = 3\n", "meta", "'source' must be a string, got integer"),
        ('meta = "acme"\n', "meta", "must be a table, got string"),
        ('link = "aws.x"\n', "link", "must be an array of tables ([[link]]), got string"),
        ("link = [1]\n", "link[1]", "must be a table, got integer"),
    ],
)
def test_wrong_types(tmp_path: Path, body: str, entry: str, reason: str) -> None:
    write(tmp_path, "x.toml", body)
    error = load_error(tmp_path)
    assert (error.file, error.entry) == (str(tmp_path / "x.toml"), entry)
    assert error.reason.startswith(reason), error.reason


@pytest.mark.parametrize(
    ("body", "entry", "reason"),
    [
        (link("", "A.8.5"), "link[1]", "'check' must not be empty"),
        (
            link(CHECK_A, "A.8.5", "   "),
            f"link[1] ({CHECK_A} → A.8.5)",
            "'rationale' must not be empty",
        ),
        (
            '[[documented]]\ncontrol = "A.5.9"\nexpected_evidence = ""\n',
            "documented[1] (A.5.9)",
            "'expected_evidence' must not be empty",
        ),
        (
            documented("A.8.5", extra='automated_sufficient = true\nautomated_rationale = " "'),
            "documented[1] (A.8.5)",
            "'automated_rationale' must not be empty",
        ),
        ('[meta]\ndescription = ""\n', "meta", "'description' must not be empty"),
    ],
)
def test_empty_strings(tmp_path: Path, body: str, entry: str, reason: str) -> None:
    write(tmp_path, "x.toml", body)
    error = load_error(tmp_path)
    assert (error.entry, error.reason) == (entry, reason)


def test_missing_key(tmp_path: Path) -> None:
    write(tmp_path, "x.toml", f'[[link]]\ncheck = "{CHECK_A}"\ncontrol = "A.8.5"\n')
    error = load_error(tmp_path)
    assert error.entry == f"link[1] ({CHECK_A} → A.8.5)"
    assert error.reason == "missing key 'rationale'"


def test_unknown_control(tmp_path: Path) -> None:
    write(
        tmp_path,
        "aws.toml",
        link(CHECK_B, "A.8.24") + link("aws.iam.user_console_mfa", "A.9.9"),
    )
    error = load_error(tmp_path)
    assert error.file == str(tmp_path / "aws.toml")
    assert error.entry == "link[2] (aws.iam.user_console_mfa → A.9.9)"
    assert "unknown control A.9.9" in error.reason
    assert "iso27001-2022" in error.reason


@pytest.mark.parametrize("bad", ["A.08.5", "8.5", "a.8.5", "A.8.5 ", "A.8", "A.8.5.1", "A-8-5"])
def test_malformed_control_id(tmp_path: Path, bad: str) -> None:
    write(tmp_path, "x.toml", link(CHECK_A, bad))
    error = load_error(tmp_path)
    assert error.entry == f"link[1] ({CHECK_A} → {bad})"
    assert "malformed control id" in error.reason


def test_malformed_control_id_in_documented(tmp_path: Path) -> None:
    write(tmp_path, "x.toml", documented("5.9", "Inventory."))
    error = load_error(tmp_path)
    assert error.entry == "documented[1] (5.9)"
    assert "malformed control id '5.9'" in error.reason


def test_unknown_control_in_documented(tmp_path: Path) -> None:
    write(tmp_path, "x.toml", documented("A.7.15", "X."))
    error = load_error(tmp_path)
    assert error.entry == "documented[1] (A.7.15)"
    assert "unknown control A.7.15" in error.reason


def test_unknown_key_in_documented(tmp_path: Path) -> None:
    write(tmp_path, "x.toml", documented("A.7.1", extra="owner = 'me'"))
    error = load_error(tmp_path)
    assert error.entry == "documented[1] (A.7.1)"
    assert error.reason.startswith("unknown key 'owner' (allowed: automated_rationale,")


def test_missing_expected_evidence(tmp_path: Path) -> None:
    write(tmp_path, "x.toml", '[[documented]]\ncontrol = "A.7.1"\n')
    error = load_error(tmp_path)
    assert error.entry == "documented[1] (A.7.1)"
    assert error.reason == "missing key 'expected_evidence'"


@pytest.mark.parametrize("bad", ["aws iam.mfa", "aws.iam.mfa!", ".aws.iam", "aws..iam"])
def test_malformed_check_id(tmp_path: Path, bad: str) -> None:
    write(tmp_path, "x.toml", link(bad, "A.8.5"))
    error = load_error(tmp_path)
    assert "malformed check id" in error.reason


def test_unknown_check_only_when_known_checks_given(tmp_path: Path, known: set[str]) -> None:
    write(tmp_path, "x.toml", link(CHECK_A, "A.8.5") + link("test.iam.user_mfa_enable", "A.8.5"))
    load_mappings([tmp_path])  # no registry given: not judged
    error = load_error(tmp_path, known_checks=known)
    assert error.entry == "link[2] (test.iam.user_mfa_enable → A.8.5)"
    assert "unknown check 'test.iam.user_mfa_enable'" in error.reason
    assert f"did you mean '{CHECK_A}'" in error.reason


def test_duplicate_link_in_same_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        "x.toml",
        link(CHECK_A, "A.8.5") + link(CHECK_B, "A.8.5") + link(CHECK_A, "A.8.5", "Said twice."),
    )
    error = load_error(tmp_path)
    file = str(tmp_path / "x.toml")
    assert (error.file, error.entry) == (file, f"link[3] ({CHECK_A} → A.8.5)")
    assert "duplicate link" in error.reason
    assert f"{file}: link[1] ({CHECK_A} → A.8.5)" in error.reason


def test_duplicate_link_across_files_names_both(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", link(CHECK_A, "A.8.5"))
    write(tmp_path, "b/c.toml", link(CHECK_C, "A.8.15") + link(CHECK_A, "A.8.5"))
    error = load_error(tmp_path)
    assert error.file == str(tmp_path / "b" / "c.toml")
    assert error.entry == f"link[2] ({CHECK_A} → A.8.5)"
    assert str(tmp_path / "a.toml") in error.reason
    assert "link[1]" in error.reason


def test_duplicate_link_across_user_dirs(tmp_path: Path) -> None:
    write(tmp_path / "one", "a.toml", link(CHECK_A, "A.8.5"))
    write(tmp_path / "two", "a.toml", link(CHECK_A, "A.8.5"))
    with pytest.raises(MappingError) as info:
        load_mappings([tmp_path / "one", tmp_path / "two"])
    assert info.value.file == str(tmp_path / "two" / "a.toml")
    assert str(tmp_path / "one" / "a.toml") in info.value.reason


def test_duplicate_documented_part_against_builtin(tmp_path: Path) -> None:
    write(tmp_path, "x.toml", documented("A.7.1", "Plans."))
    error = load_error(tmp_path)
    assert (error.file, error.entry) == (str(tmp_path / "x.toml"), "documented[1] (A.7.1)")
    assert "duplicate documented part for A.7.1" in error.reason
    assert "controls.toml: documented[" in error.reason


def test_duplicate_documented_part_in_same_file(fake_builtin: Path) -> None:
    path = fake_builtin / CONTROLS_FILE
    path.write_text(
        path.read_text(encoding="utf-8") + "\n" + documented("A.5.9", "Again."), encoding="utf-8"
    )
    with pytest.raises(MappingError) as info:
        load_mappings()
    assert info.value.file == CONTROLS_FILE
    assert info.value.entry == "documented[94] (A.5.9)"
    assert "duplicate documented part for A.5.9" in info.value.reason
    assert "documented[9] (A.5.9)" in info.value.reason


def _drop_documented(root: Path, control: str) -> None:
    path = root / CONTROLS_FILE
    text = path.read_text(encoding="utf-8")
    start = text.index(f'[[documented]]\ncontrol = "{control}"\n')
    end = text.find("[[documented]]", start + 1)
    path.write_text(text[:start] + (text[end:] if end != -1 else ""), encoding="utf-8")


def test_missing_documented_part_names_the_controls(fake_builtin: Path) -> None:
    _drop_documented(fake_builtin, "A.8.12")
    _drop_documented(fake_builtin, "A.5.23")
    with pytest.raises(MappingError) as info:
        load_mappings()
    assert (info.value.file, info.value.entry) == (CONTROLS_FILE, "<file>")
    assert info.value.reason.startswith("no [[documented]] entry for 2 control(s): A.5.23, A.8.12")


def test_user_dir_may_supply_a_missing_documented_part(fake_builtin: Path, tmp_path: Path) -> None:
    _drop_documented(fake_builtin, "A.8.12")
    write(tmp_path / "user", "dlp.toml", documented("A.8.12", "Our DLP standard."))
    index = load_mappings([tmp_path / "user"])
    assert index.documented("A.8.12").file == str(tmp_path / "user" / "dlp.toml")


def test_unreadable_file_does_not_add_spurious_missing_parts(fake_builtin: Path) -> None:
    (fake_builtin / CONTROLS_FILE).write_text("broken = [\n", encoding="utf-8")
    errors = validate_mappings()
    assert [(e.file, e.entry) for e in errors] == [(CONTROLS_FILE, "<file>")]
    assert "TOML syntax error" in errors[0].reason


def test_automated_sufficient_needs_a_linked_check(fake_builtin: Path) -> None:
    _drop_documented(fake_builtin, "A.8.12")
    write(
        fake_builtin,
        "extra.toml",
        documented("A.8.12", "DLP.", 'automated_sufficient = true\nautomated_rationale = "r"'),
    )
    with pytest.raises(MappingError) as info:
        load_mappings()
    assert (info.value.file, info.value.entry) == ("extra.toml", "documented[1] (A.8.12)")
    assert "no check is linked to A.8.12" in info.value.reason
    write(fake_builtin, "checks/dlp.toml", link("aws.macie.enabled", "A.8.12"))
    index = load_mappings()
    assert index.documented("A.8.12").automated_sufficient
    assert index.documented("A.8.12").rationale == "r"


def test_missing_user_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    error = load_error(missing)
    assert (error.file, error.entry) == (str(missing), "<dir>")
    assert "does not exist" in error.reason


def test_user_dir_that_is_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "x.toml", link(CHECK_A, "A.8.5"))
    error = load_error(str(path))
    assert (error.file, error.entry) == (str(path), "<dir>")
    assert "not a directory" in error.reason


def test_validate_mappings_lists_every_problem(tmp_path: Path, known: set[str]) -> None:
    write(tmp_path, "a.toml", link(CHECK_A, "A.9.9") + link("nope.check", "A.8.5"))
    write(tmp_path, "b.toml", "broken = [\n")
    errors = validate_mappings([tmp_path, tmp_path / "missing"], known_checks=known)
    # Directory problems come first (found while listing files), then files in order.
    assert [(Path(e.file).name, e.entry) for e in errors] == [
        ("missing", "<dir>"),
        ("a.toml", f"link[1] ({CHECK_A} → A.9.9)"),
        ("a.toml", "link[2] (nope.check → A.8.5)"),
        ("b.toml", "<file>"),
    ]
    assert validate_mappings([], known_checks=known) == ()


# --------------------------------------------------------------------------- built-in tree


@pytest.fixture
def fake_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped catalog and documented parts, used as the built-in directory."""
    root = tmp_path / "builtin"
    (root / "catalogs").mkdir(parents=True)
    shutil.copy(builtin_dir() / "catalogs" / "iso27001-2022.toml", root / "catalogs")
    # The copy has no check files, so no control's automated part can suffice there.
    text = (builtin_dir() / CONTROLS_FILE).read_text(encoding="utf-8")
    text = re.sub(r"automated_sufficient = true\nautomated_rationale = .*\n", "", text)
    (root / CONTROLS_FILE).write_text(text, encoding="utf-8")
    monkeypatch.setattr(loader_module, "builtin_dir", lambda: root)
    return root


def test_builtin_mapping_files_are_discovered(fake_builtin: Path) -> None:
    write(fake_builtin, "checks/aws.toml", link("aws.iam.root_mfa", "A.8.5"))
    write(fake_builtin, "crosswalks/soc2.toml", "not a mapping file at all = [")
    write(fake_builtin, "catalogs/other.toml", "nor = [")
    index = load_mappings(known_checks={"aws.iam.root_mfa"})
    assert index.files == ("catalogs/iso27001-2022.toml", "checks/aws.toml", "controls.toml")
    assert index.controls_for("aws.iam.root_mfa") == ("A.8.5",)
    assert index.links[0].file == "checks/aws.toml"


def test_builtin_errors_name_the_relative_file(fake_builtin: Path) -> None:
    write(fake_builtin, "checks/aws.toml", link("aws.iam.root_mfa", "A.5.99"))
    with pytest.raises(MappingError) as info:
        load_mappings()
    assert info.value.file == "checks/aws.toml"
    assert info.value.entry == "link[1] (aws.iam.root_mfa → A.5.99)"


def _break_catalog(root: Path, old: str, new: str) -> None:
    path = root / "catalogs" / "iso27001-2022.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


SCREENING = 'id = "A.6.1"\ntitle = "Screening"\ntheme = '  # A.6.1 up to its theme's value
MASKING = 'title = "Data masking"\n'  # A.8.11's title line


@pytest.mark.parametrize(
    ("old", "new", "entry", "reason"),
    [
        ('id = "A.5.2"\n', 'id = "A.5.1"\n', "control[2]", "duplicate control id A.5.1"),
        (SCREENING + '"people"', SCREENING + '"human"', "control[38]", "unknown theme 'human'"),
        ('id = "A.5.12"', 'id = "A5.12"', "control[12]", "malformed control id 'A5.12'"),
        ('title = "Threat intelligence"\n', "", "control[7]", "missing key 'title'"),
        (MASKING, MASKING + 'owner = "x"\n', "control[70]", "unknown key 'owner'"),
        (MASKING, 'title = ""\n', "control[70]", "'title' must not be empty"),
        ('id = "iso27001-2022"\n', "", "catalog", "missing key 'id'"),
    ],
)
def test_catalog_validation(
    fake_builtin: Path, old: str, new: str, entry: str, reason: str
) -> None:
    _break_catalog(fake_builtin, old, new)
    with pytest.raises(MappingError) as info:
        load_mappings()
    assert info.value.file == "catalogs/iso27001-2022.toml"
    assert info.value.entry == entry
    assert info.value.reason.startswith(reason), info.value.reason


def test_catalog_syntax_error(fake_builtin: Path) -> None:
    _break_catalog(fake_builtin, 'id = "A.5.3"', 'id = "A.5.3')
    with pytest.raises(MappingError) as info:
        load_mappings()
    assert (info.value.file, info.value.entry) == ("catalogs/iso27001-2022.toml", "<file>")
    assert "TOML syntax error" in info.value.reason


def test_catalog_without_controls(fake_builtin: Path) -> None:
    path = fake_builtin / "catalogs" / "iso27001-2022.toml"
    path.write_text('[catalog]\nid = "x"\ntitle = "X"\n', encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load_mappings()
    assert info.value.entry == "<file>"
    assert "no [[control]]" in info.value.reason


def test_catalog_errors_stop_validation_early(fake_builtin: Path) -> None:
    _break_catalog(fake_builtin, 'theme = "physical"', 'theme = "facilities"')
    errors = validate_mappings()
    assert [e.file for e in errors] == ["catalogs/iso27001-2022.toml"]
