"""Loading content rules: the shipped file's schema and vocabulary, operator files, settings."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from otp_service.content_rules import (
    content_policy_from_settings,
    load_policy,
    load_rules,
    parse_rules,
    shipped_rules_text,
)
from otp_service.core.content import STRUCTURAL_CHECKS, Action, Severity, default_severity
from otp_service.errors import ConfigurationError
from otp_service.settings import Settings

CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")


def test_shipped_rules_load_with_hundreds_of_keywords() -> None:
    rules = load_rules()
    keywords = [k for rule in rules.keyword_rules for k in rule.keywords]
    assert len(keywords) >= 500
    assert len({rule.id for rule in rules.keyword_rules}) == len(rules.keyword_rules)
    assert {r.check for r in rules.structural_rules} == STRUCTURAL_CHECKS
    assert rules.version.startswith("2025.1+")


def test_every_shipped_group_has_chinese_and_english_keywords() -> None:
    data = tomllib.loads(shipped_rules_text())
    for name, group in data["group"].items():
        words = [k for rule in group["rules"] for k in rule["keywords"]]
        assert any(CJK.search(w) for w in words), name
        assert any(LATIN.search(w) for w in words), name


def test_section_per_prohibited_group_of_the_provider_list() -> None:
    groups = set(tomllib.loads(shipped_rules_text())["group"])
    assert groups >= {
        "finance", "gambling", "vice", "politics", "religion", "medical", "venues", "traffic",
        "carrier", "engagement", "services", "property", "other", "marketing",
    }  # fmt: skip


def test_rows_and_severities_follow_the_violation_table() -> None:
    rules = load_rules()
    for rule in rules.keyword_rules:
        assert 1 <= rule.row <= 9
        assert rule.severity is default_severity(rule.row)
    marketing = [r for r in rules.keyword_rules if r.group == "marketing"]
    assert marketing and all(r.row == 6 and r.action is Action.BLOCK for r in marketing)
    signature = {r.check: r for r in rules.structural_rules}["signature_mismatch"]
    assert (signature.row, signature.severity) == (1, Severity.MINOR)


def test_policy_compiles_every_shipped_keyword() -> None:
    policy = load_policy()
    assert policy.keyword_count == sum(len(r.keywords) for r in policy.rules.keyword_rules)


# --- operator files ------------------------------------------------------------------------


@pytest.fixture
def operator_file(tmp_path: Path) -> Callable[[str], str]:
    def write(text: str) -> str:
        path = tmp_path / "rules.toml"
        path.write_text(text, "utf-8")
        return str(path)

    return write


def test_operator_file_extends_disables_replaces_and_patches(
    operator_file: Callable[[str], str],
) -> None:
    path = operator_file(
        """
schema = 1
version = "acme-3"
allow = ["赌场路"]
disable = ["carrier.services", "structure.special_symbols"]

[extend."gambling.betting"]
keywords = ["lucky spin", "幸运转盘"]

[structure.signature_missing]
action = "block"

[[group.finance.rules]]
id = "finance.general"
row = 8
action = "block"
keywords = ["贷款"]
"""
    )
    rules = load_rules(path)
    by_id = {r.id: r for r in rules.keyword_rules}
    assert "carrier.services" not in by_id
    assert {"lucky spin", "幸运转盘"} <= set(by_id["gambling.betting"].keywords)
    assert by_id["finance.general"].keywords == ("贷款",)
    assert by_id["finance.general"].action is Action.BLOCK
    structure = {r.check: r for r in rules.structural_rules}
    assert "special_symbols" not in structure
    assert structure["signature_missing"].action is Action.BLOCK
    assert structure["signature_missing"].row == 1
    assert rules.version.startswith("2025.1/acme-3+")

    policy = load_policy(path)
    report = policy.check_message("验证码123456，幸运转盘，赌场路口★", ["123456"], None)
    assert {f.rule for f in report.blocking} == {"gambling.betting", "structure.signature_missing"}


def test_version_and_policy_change_with_the_operator_file(
    operator_file: Callable[[str], str],
) -> None:
    first = load_policy(operator_file('schema = 1\nallow = ["甲乙"]\n'))
    second = load_policy(operator_file('schema = 1\nallow = ["丙丁"]\n'))
    assert first.version != second.version
    assert first is not second
    assert load_policy() is not first


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("schema = 2", "schema must be 1", id="schema"),
        pytest.param("schema = 1\nbogus = 1", "unknown keys bogus", id="unknown-top"),
        pytest.param("schema = 1\ndisable = ['nope.rule']", "unknown rule 'nope.rule'", id="dis"),
        pytest.param(
            "schema = 1\n[extend.'nope.rule']\nkeywords = ['ab']", "unknown rule", id="ext"
        ),
        pytest.param(
            "schema = 1\n[structure.colour]\nrow = 1\naction = 'flag'", "unknown check", id="chk"
        ),
        pytest.param(
            "schema = 1\n[structure.link]\naction = 'maybe'", "action must be", id="action"
        ),
        pytest.param("schema = 1\n[structure.link]\nrow = 10", "row must be", id="row"),
        pytest.param(
            "schema = 1\n[[group.x.rules]]\nid = 'y.z'\nrow = 8\naction = 'block'\n"
            "keywords = ['ab']",
            "id must look like 'x.<name>'",
            id="id-prefix",
        ),
        pytest.param(
            "schema = 1\n[[group.x.rules]]\nid = 'x.z'\nrow = 8\naction = 'block'\nkeywords = []",
            "at least one keyword",
            id="empty",
        ),
        pytest.param(
            "schema = 1\n[[group.x.rules]]\nid = 'x.z'\nrow = 8\naction = 'block'\n"
            "keywords = ['ab']\nseverity = 'huge'",
            "severity must be",
            id="severity",
        ),
        pytest.param("schema = 1\n[[group.x.rules]]\n", "id must be", id="no-id"),
        pytest.param("schema = [", "not valid TOML", id="toml"),
    ],
)
def test_operator_file_errors_name_the_variable(
    operator_file: Callable[[str], str], text: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONTENT_RULES") as info:
        load_rules(operator_file(text))
    assert message in str(info.value)


def test_missing_operator_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONTENT_RULES.*cannot read"):
        load_rules(tmp_path / "absent.toml")


def test_keyword_too_short_fails_at_build(operator_file: Callable[[str], str]) -> None:
    path = operator_file("schema = 1\n[extend.'vice.drugs']\nkeywords = ['毒']\n")
    with pytest.raises(ConfigurationError, match="OTP_CONTENT_RULES.*at least two"):
        load_policy(path)


def test_shipped_file_may_not_disable() -> None:
    with pytest.raises(ConfigurationError, match="operator file"):
        parse_rules("schema = 1\ndisable = []\n")


def test_duplicate_rule_id_in_one_file() -> None:
    rule = "[[group.x.rules]]\nid = 'x.a'\nrow = 8\naction = 'block'\nkeywords = ['ab']\n"
    with pytest.raises(ConfigurationError, match="defined twice"):
        parse_rules("schema = 1\n" + rule + rule)


# --- settings ------------------------------------------------------------------------------


def test_setting_from_environment(
    settings_factory: Callable[..., Settings], operator_file: Callable[[str], str]
) -> None:
    path = operator_file("schema = 1\n[extend.'gambling.betting']\nkeywords = ['lucky spin']\n")
    settings = Settings.from_env({"OTP_CONTENT_RULES": path, "OTP_ENV": "testing"})
    assert settings.content_rules == path
    policy = content_policy_from_settings(settings)
    assert policy is content_policy_from_settings(settings)
    assert policy.check_message("验证码123456 lucky spin", ["123456"], "x").blocked
    default = content_policy_from_settings(settings_factory())
    assert default is load_policy()
    assert Settings.from_env({"OTP_CONTENT_RULES": "  "}).content_rules is None
