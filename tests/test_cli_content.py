"""``otp-service content check`` and ``content lint-template`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from otp_service.cli import (
    CONTENT_EXIT_BLOCKED,
    CONTENT_EXIT_CLEAN,
    CONTENT_EXIT_CONFIG,
    CONTENT_EXIT_FLAGS,
    CONTENT_EXIT_USAGE,
    main,
)
from tests.conftest import TEST_SECRET

ENV = {"OTP_SECRET_KEY": TEST_SECRET, "OTP_HUAWEI_SIGNATURE": "示例科技"}


def invoke(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["content", *args], env=ENV | (env or {}), input=stdin)


@pytest.mark.parametrize(
    ("args", "exit_code"),
    [
        pytest.param(["您的验证码是123456，5分钟内有效。", "-p", "123456"], 0, id="clean"),
        pytest.param(["您的验证码是123456，医院挂号专用。", "-p", "123456"], 1, id="flag"),
        pytest.param(["您的验证码是123456，澳门赌场！", "-p", "123456"], 2, id="block"),
        pytest.param(["Your code is 123456.", "-p", "t.cn/x"], 2, id="param-link"),
        pytest.param(["Your code is 123456.", "-p", "1", "-p", "2"], 2, id="two-params"),
        pytest.param(["您的验证码是123456。"], 0, id="params-unknown"),
    ],
)
def test_check_exit_codes(args: list[str], exit_code: int) -> None:
    result = invoke("check", *args)
    assert result.exit_code == exit_code, result.output


def test_check_prints_rule_row_severity_and_position() -> None:
    text = "您的验证码是123456，澳门赌场！"
    result = invoke("check", text, "-p", "123456")
    assert result.exit_code == CONTENT_EXIT_BLOCKED
    line = next(x for x in result.output.splitlines() if "gambling.betting" in x)
    assert line.startswith("BLOCK")
    assert "row 8" in line and "critical" in line
    start, end = text.index("澳门赌场"), text.index("澳门赌场") + 4
    assert f"text[{start}:{end}]" in line and "'澳门赌场'" in line
    assert "blocks: 1, flags: 0" in result.output


def test_check_flags_missing_signature_when_none_configured() -> None:
    result = invoke("check", "您的验证码是123456。", env={"OTP_HUAWEI_SIGNATURE": ""})
    assert result.exit_code == CONTENT_EXIT_FLAGS
    assert "structure.signature_missing" in result.output


def test_check_json() -> None:
    result = invoke("check", "验证码123456 bit.ly/x", "-p", "123456", "--json")
    assert result.exit_code == CONTENT_EXIT_BLOCKED
    report = json.loads(result.output)
    (finding,) = [f for f in report["findings"] if f["rule"] == "structure.short_link"]
    assert (finding["row"], finding["severity"], finding["action"]) == (8, "critical", "block")
    assert (finding["target"], finding["start"], finding["end"]) == ("text", 10, 18)
    assert report["segments"] == 1


def test_check_with_signature_mismatch() -> None:
    result = invoke("check", "【别家】验证码123456", "-p", "123456")
    assert result.exit_code == CONTENT_EXIT_BLOCKED
    assert "structure.signature_mismatch" in result.output
    assert "row 1" in result.output


def test_lint_template_from_text_file_and_stdin(tmp_path: Path) -> None:
    good = "您的验证码为${1}，5分钟内有效。"
    assert invoke("lint-template", good).exit_code == CONTENT_EXIT_CLEAN
    path = tmp_path / "template.txt"
    path.write_text("验证码${1}，有效期${2}分钟。\n", "utf-8")
    from_file = invoke("lint-template", str(path))
    assert from_file.exit_code == CONTENT_EXIT_BLOCKED
    assert "structure.variable_count" in from_file.output
    assert "template[" in from_file.output
    from_stdin = invoke("lint-template", "-", stdin="验证码${1}，回T退订\n")
    assert from_stdin.exit_code == CONTENT_EXIT_BLOCKED
    assert "marketing.unsubscribe" in from_stdin.output


def test_lint_template_length_counts_signature() -> None:
    result = invoke("lint-template", "您的验证码为${1}。", "--json")
    # 7 fixed + 8 for the code at its longest + 6 for 【示例科技】
    assert json.loads(result.output)["length"] == 21


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["check"], id="missing-argument"),
        pytest.param(["check", "x", "--bogus"], id="unknown-option"),
        pytest.param(["frobnicate"], id="unknown-command"),
    ],
)
def test_usage_errors_exit_64(args: list[str]) -> None:
    assert invoke(*args).exit_code == CONTENT_EXIT_USAGE


def test_unreadable_template_file_exits_64(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"\xff\xfe\xfa")
    assert invoke("lint-template", str(path)).exit_code == CONTENT_EXIT_USAGE


def test_bad_rules_file_exits_78(tmp_path: Path) -> None:
    result = invoke("check", "x", env={"OTP_CONTENT_RULES": str(tmp_path / "missing.toml")})
    assert result.exit_code == CONTENT_EXIT_CONFIG
    assert "OTP_CONTENT_RULES" in result.output


def test_operator_rules_option(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("schema = 1\n[extend.'gambling.betting']\nkeywords = ['lucky spin']\n")
    text = "Your code is 123456. Lucky spin!"
    assert invoke("check", text, "-p", "123456").exit_code == CONTENT_EXIT_CLEAN
    result = invoke("check", text, "-p", "123456", "--rules", str(rules))
    assert result.exit_code == CONTENT_EXIT_BLOCKED


def test_help_documents_exit_codes() -> None:
    for args in (["--help"], ["check", "--help"], ["lint-template", "--help"]):
        result = invoke(*args)
        assert result.exit_code == 0
        assert "0 clean, 1 flags only, 2 at least one block" in result.output
        assert "64 usage error" in result.output


CLEAN = "您的验证码为${1}，5分钟内有效。"
BLOCKED = "验证码${1}，回T退订"
FLAGGED = "您的验证码是${1}，医院挂号专用。"


def many_file(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "templates.txt"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("bad", "rule", "exit_code"),
    [
        pytest.param(BLOCKED, "marketing.unsubscribe", CONTENT_EXIT_BLOCKED, id="block"),
        pytest.param(FLAGGED, "medical.health", CONTENT_EXIT_FLAGS, id="flag"),
    ],
)
def test_lint_many_reports_the_line_and_the_bad_templates_exit_code(
    tmp_path: Path, bad: str, rule: str, exit_code: int
) -> None:
    result = invoke("lint-template", "--many", many_file(tmp_path, CLEAN, bad, CLEAN))
    assert result.exit_code == exit_code, result.output
    findings = [x for x in result.output.splitlines() if rule in x]
    assert findings and all(x.startswith("line 2: ") for x in findings)
    assert "templates: 3" in result.output


def test_lint_many_exits_with_the_worst_template(tmp_path: Path) -> None:
    path = many_file(tmp_path, FLAGGED, BLOCKED, CLEAN)
    assert invoke("lint-template", "--many", path).exit_code == CONTENT_EXIT_BLOCKED
    path = many_file(tmp_path, CLEAN, FLAGGED, CLEAN)
    assert invoke("lint-template", "--many", path).exit_code == CONTENT_EXIT_FLAGS
    path = many_file(tmp_path, CLEAN, CLEAN)
    assert invoke("lint-template", "--many", path).exit_code == CONTENT_EXIT_CLEAN


def test_lint_many_skips_blank_lines_and_keeps_the_files_line_numbers(tmp_path: Path) -> None:
    path = many_file(tmp_path, CLEAN, "", "   ", BLOCKED + "\r", "")
    result = invoke("lint-template", "--many", path, "--json")
    assert result.exit_code == CONTENT_EXIT_BLOCKED
    reports = json.loads(result.output)
    assert [r["line"] for r in reports] == [1, 4]
    assert reports[0]["findings"] == []
    (finding,) = reports[1]["findings"]
    assert finding["rule"] == "marketing.unsubscribe"
    # the span is in the line without its CR, so it matches the template the operator wrote
    assert (finding["start"], finding["end"]) == (BLOCKED.index("回T退订"), len(BLOCKED))
    text = invoke("lint-template", "--many", path).output
    assert "line 4: BLOCK marketing.unsubscribe" in text
    assert "'回T退订'" in text


def test_lint_many_reads_stdin() -> None:
    result = invoke("lint-template", "--many", "-", stdin=f"{CLEAN}\n{BLOCKED}\n")
    assert result.exit_code == CONTENT_EXIT_BLOCKED
    assert "line 2: BLOCK marketing.unsubscribe" in result.output


def test_lint_many_json_has_the_single_template_fields_plus_line(tmp_path: Path) -> None:
    single = json.loads(invoke("lint-template", BLOCKED, "--json").output)
    (many,) = json.loads(
        invoke("lint-template", "--many", many_file(tmp_path, BLOCKED), "--json").output
    )
    assert many == {"line": 1} | single


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["lint-template", CLEAN, "--many", "-"], "either TEMPLATE or --many", id="both"
        ),
        pytest.param(["lint-template"], "missing TEMPLATE (or --many FILE)", id="neither"),
    ],
)
def test_lint_many_and_a_template_are_mutually_exclusive(args: list[str], message: str) -> None:
    # 64, not click's 2: in this group 2 means "blocked"
    result = invoke(*args, stdin=f"{CLEAN}\n")
    assert result.exit_code == CONTENT_EXIT_USAGE
    assert message in result.output


def test_lint_many_unreadable_file_exits_64(tmp_path: Path) -> None:
    assert (
        invoke("lint-template", "--many", str(tmp_path / "missing.txt")).exit_code
        == CONTENT_EXIT_USAGE
    )
    path = tmp_path / "bad.txt"
    path.write_bytes(b"\xff\xfe\xfa\n")
    assert invoke("lint-template", "--many", str(path)).exit_code == CONTENT_EXIT_USAGE


def test_lint_many_gives_one_result_per_template(tmp_path: Path) -> None:
    templates = [f"{CLEAN}（{i}）" if i % 10 else f"{BLOCKED}（{i}）" for i in range(1_000)]
    result = invoke("lint-template", "--many", many_file(tmp_path, *templates), "--json")
    assert result.exit_code == CONTENT_EXIT_BLOCKED
    reports = json.loads(result.output)
    assert [r["line"] for r in reports] == list(range(1, 1_001))
    assert sum(bool(r["findings"]) for r in reports) == 100
