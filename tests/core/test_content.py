"""The content check: every §8.2 group blocks a real example and passes a similar innocent one,
common evasions are caught, structural rules hold, and positions point into the original text."""

from __future__ import annotations

import dataclasses

import pytest

from otp_service.content_rules import load_policy, parse_rules, shipped_rules_text
from otp_service.core.content import (
    Action,
    ContentPolicy,
    ContentReport,
    Finding,
    Severity,
    count_segments,
)

SIGNATURE = "示例科技"


@pytest.fixture(scope="module")
def policy() -> ContentPolicy:
    return load_policy()


def check(policy: ContentPolicy, text: str, code: str = "123456") -> ContentReport:
    return policy.check_message(text, [code], SIGNATURE)


def keyword_rules(report: ContentReport) -> set[str]:
    return {f.rule for f in report.findings if f.group != "structure"}


# --- every group: one real example blocks, a similar innocent message passes ---------------

GROUP_CASES = [
    # (group, rule, banned message, innocent look-alike)
    ("finance", "finance.loan_scam",
     "您的验证码是123456。黑户可贷，极速放款！",
     "您的验证码是123456，用于绑定银行卡，5分钟内有效。"),
    ("finance", "finance.virtual_currency",
     "Your code is 123456. Buy bitcoin today!",
     "Your code is 123456. Do not share it with anyone."),
    ("finance", "finance.debt_collection",
     "验证码123456。您已逾期未还，将上门催收。", "验证码123456，您正在修改登录密码。"),
    ("gambling", "gambling.betting",
     "验证码123456，澳门赌场真人荷官在线", "验证码123456，欢迎登录澳门旅游官方应用。"),
    ("gambling", "gambling.betting",
     "Your code is 123456. Online casino bonus inside",
     "Your code is 123456 for the casual games app."),
    ("gambling", "gambling.lottery",
     "验证码123456，六合彩特码今晚开奖", "验证码123456，今晚系统维护，请提前登录。"),
    ("gambling", "gambling.prize",
     "恭喜您中奖！验证码123456，请领取奖品", "验证码123456，集中奖励发放前请完成实名认证。"),
    ("vice", "vice.pornography",
     "验证码123456，同城约炮点这里", "验证码123456，同城配送已开通。"),
    ("vice", "vice.drugs",
     "Code 123456. Cocaine and ketamine delivered", "Code 123456. Your delivery is on its way."),
    ("vice", "vice.weapons",
     "验证码123456，出售仿真枪和子弹", "验证码123456，您的仿真练习题已生成。"),
    ("vice", "vice.counterfeit",
     "验证码123456，高仿名表一比一复刻", "验证码123456，您的名片已更新。"),
    ("politics", "politics.legal_threat",
     "验证码123456。法院传票：您已被起诉", "验证码123456，用于电子政务平台登录。"),
    ("politics", "politics.illegal",
     "验证码123456，法轮功真相", "验证码123456，您的动态码即将过期，反动态码无效。"),
    ("religion", "religion.superstition",
     "验证码123456，大师算命看风水", "验证码123456，包裹已到达转运中心。"),
    ("medical", "medical.illegal",
     "Your code: 123456. Viagra without prescription!", "Your code: 123456. Valid for 10 minutes."),
    ("venues", "venues.nightlife",
     "验证码123456，高端会所足浴特价", "验证码123456，您正在登录会员中心。"),
    ("traffic", "traffic.contact",
     "验证码123456，加微信领福利", "验证码123456，您正在绑定微信账号。"),
    ("traffic", "traffic.app_promotion",
     "验证码123456，点击下载APP", "验证码123456，您正在登录APP。"),
    ("traffic", "traffic.acquisition",
     "验证码123456，邀请好友注册就送", "验证码123456，您正在注册新账号。"),
    ("carrier", "carrier.bulk_sms",
     "验证码123456，专业短信群发", "验证码123456，短信已发送至您的手机。"),
    ("engagement", "engagement.click_farming",
     "验证码123456，刷单好评返现", "验证码123456，评价已提交，感谢支持。"),
    ("services", "services.fraudulent",
     "验证码123456，代开发票办证刻章", "验证码123456，您的电子发票已开具。"),
    ("services", "services.part_time",
     "Code 123456. Part-time job, work from home!", "Code 123456. Time to log in from home."),
    ("other", "other.dating",
     "验证码123456，同城交友找对象", "验证码123456，同城快递已送达。"),
    ("other", "other.illegal_services",
     "验证码123456，驾照销分代办", "验证码123456，您正在办理驾照信息查询。"),
    ("fraud", "fraud.phishing",
     "验证码123456，您的资金需转入安全账户", "验证码123456，您正在登录账户安全中心。"),
    ("fraud", "fraud.phishing",
     "Code 123456. Customs fee unpaid, package on hold", "Code 123456. Your package has shipped."),
    ("marketing", "marketing.promotion",
     "您的验证码是123456，全场5折限时抢购！", "您的验证码是123456，5分钟内有效。"),
    ("marketing", "marketing.promotion",
     "Your code is 123456. Flash sale: 50 percent off!",
     "Your code is 123456. It's valid for 5 min."),
    ("marketing", "marketing.unsubscribe",
     "验证码123456，回T退订", "验证码123456，如非本人操作请忽略。"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("group", "rule", "banned", "innocent"),
    [pytest.param(*case, id=f"{case[1]}-{i}") for i, case in enumerate(GROUP_CASES)],
)
def test_group_blocks_real_example_and_passes_lookalike(
    policy: ContentPolicy, group: str, rule: str, banned: str, innocent: str
) -> None:
    report = check(policy, banned)
    assert report.blocked
    hit = next(f for f in report.blocking if f.rule == rule)
    assert hit.group == group
    assert 1 <= hit.row <= 9
    clean = check(policy, innocent)
    assert not clean.blocked, clean.findings
    assert keyword_rules(clean) == set()


def test_every_shipped_group_is_exercised(policy: ContentPolicy) -> None:
    blocking_groups = {r.group for r in policy.rules.keyword_rules if r.action is Action.BLOCK}
    assert blocking_groups <= {case[0] for case in GROUP_CASES}


# --- innocent verification messages never trip anything ----------------------------------

INNOCENT = [
    "您的验证码是123456，5分钟内有效，请勿泄露给他人。",
    "验证码：123456。您正在登录，若非本人操作，请忽略本短信。",
    "您正在注册新账号，验证码123456，10分钟内有效。",
    "您的注册码为123456，请在页面中输入完成注册。",
    "校验码123456，您正在修改绑定手机号，请勿告诉他人。",
    "动态码123456，用于本次支付确认，切勿泄露。",
    "您正在进行身份验证，验证码123456，工作人员不会向您索要。",
    "验证码123456，您正在找回密码，如非本人操作请及时修改密码。",
    "请勿把验证码告诉任何人，验证码：123456。",
    "验证码123456，您正在取消分享，请确认是本人操作。",
    "验证码123456，您正在使用快捷登录。",
    "验证码123456，请查看相关说明后输入。",
    "验证码123456，如无法收到请重新获取。",
    "验证码123456，退款已按原单号退回。",
    "您的驗證碼是123456，請於5分鐘內輸入。",
    "Your verification code is 123456. It expires in 5 minutes.",
    "Your code is 123456. Do not share this code with anyone.",
    "123456 is your login code. Valid for 10 minutes.",
    "Use verification code 123456 to verify your account.",
    "Use code 123456 to confirm your identity. We will never ask for it.",
    "Enter the code in every field: 123456",
    "Your one-time password is 123456. It is exciting to have you here.",
    "Your security code is 123456. If you didn't request it, ignore this message.",
    "Code 123456 — you won't be charged for this message.",
    "Your code is 123456. Choose one of the available time slots after logging in.",
    "Your passcode is 123456. Updating your settings? Validating your phone now.",
    "Your code is 123456. Method: SMS. Something went wrong? Request a new one.",
    "G-123456 is your verification code.",
    "Your PIN is 123456. Essex office login.",
    "Your code: 123456. Expires in 5 min. Valid once.",
    "Verification code 123456 for your bank app. Never share it.",
]


@pytest.mark.parametrize(
    "text", [pytest.param(t, id=f"innocent-{i}") for i, t in enumerate(INNOCENT)]
)
def test_innocent_messages_pass(policy: ContentPolicy, text: str) -> None:
    report = check(policy, text)
    assert not report.blocked, report.findings
    assert keyword_rules(report) == set(), report.findings


def test_word_code_never_trips_anything(policy: ContentPolicy) -> None:
    for text in ("code", "verification code", "验证码", "Your code is 123456", "CODE 123456"):
        assert keyword_rules(check(policy, text)) == set()


# --- evasions ------------------------------------------------------------------------------

EVASIONS = [
    ("spaces", "验证码123456，赌 博 网 站", "gambling.betting", "赌 博"),
    ("spaced-latin", "Code 123456. Play c a s i n o now", "gambling.betting", "c a s i n o"),
    ("dots", "Code 123456. c.a.s.i.n.o", "gambling.betting", "c.a.s.i.n.o"),
    ("punctuation-cjk", "验证码123456，博-彩*网", "gambling.betting", "博-彩"),
    ("full-width", "Code 123456 ｃａｓｉｎｏ", "gambling.betting", "ｃａｓｉｎｏ"),
    ("full-width-cjk-punct", "验证码123456，毒．品", "vice.drugs", "毒．品"),
    ("zero-width", "Code 123456 cas\u200bino", "gambling.betting", "cas\u200bino"),
    ("zero-width-cjk", "验证码123456，赌\u200d博", "gambling.betting", "赌\u200d博"),
    ("bom", "验证码123456，色\ufeff情", "vice.pornography", "色\ufeff情"),
    ("mixed-case", "Code 123456 CaSiNo", "gambling.betting", "CaSiNo"),
    ("cyrillic", "Code 123456 саsino", "gambling.betting", "саsino"),
    ("greek", "Code 123456 cαsinο", "gambling.betting", "cαsinο"),
    ("accents", "Code 123456 cásïnò", "gambling.betting", "cásïnò"),
    ("leet", "Code 123456 v1agra", "medical.illegal", "v1agra"),
    ("leet-zero", "Code 123456 buy p0rn", "vice.pornography", "p0rn"),
    ("traditional", "您的驗證碼是123456，澳門賭場", "gambling.betting", "澳門賭場"),
    ("traditional-mixed", "驗證碼123456，六合彩開獎", "gambling.lottery", "六合彩"),
    ("circled", "Code 123456 ⓒⓐⓢⓘⓝⓞ", "gambling.betting", "ⓒⓐⓢⓘⓝⓞ"),
    ("emoji-between", "验证码123456，赌😀博", "gambling.betting", "赌😀博"),
    ("pinyin", "验证码123456，bocai平台", "gambling.betting", "bocai"),
    ("wechat-variant", "验证码123456，加薇信", "traffic.contact", "薇信"),
    ("partial-spacing-long", "Code 123456 ca sino", "gambling.betting", "ca sino"),
]


@pytest.mark.parametrize(
    ("text", "rule", "matched"),
    [pytest.param(t, r, m, id=name) for name, t, r, m in EVASIONS],
)
def test_evasion_is_caught_and_span_points_at_original(
    policy: ContentPolicy, text: str, rule: str, matched: str
) -> None:
    report = check(policy, text)
    hits = [f for f in report.findings if f.rule == rule and f.target == "text"]
    assert hits, report.findings
    assert any(text[f.start : f.end] == matched for f in hits), [
        text[f.start : f.end] for f in hits
    ]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Your code is 123456, this is exciting", id="is-ex"),
        pytest.param("Code 123456 from the Essex office", id="essex"),
        pytest.param("Code 123456. A sextant is a tool", id="sextant"),
        pytest.param("Code 123456 for the method call", id="method"),
        pytest.param("Code 123456, updating your profile", id="updating"),
        pytest.param("Code 123456 po rn", id="partial-spacing-short"),
    ],
)
def test_separators_do_not_join_innocent_words(policy: ContentPolicy, text: str) -> None:
    assert keyword_rules(check(policy, text)) == set()


def test_digits_are_never_rewritten_outside_words(policy: ContentPolicy) -> None:
    # 1 -> i, 0 -> o only between letters: the code itself and phone-like digits stay digits.
    compact, origin = policy.normalise("Code 105 sex")
    assert compact == "code105sex"
    assert origin == (0, 1, 2, 3, 5, 6, 7, 9, 10, 11)


def test_normalise_maps_every_compact_char_to_its_original(policy: ContentPolicy) -> None:
    text = "Ａ b\u200bc、德ß"
    compact, origin = policy.normalise(text)
    assert compact == "abc德ss"
    assert origin == (0, 2, 4, 6, 7, 7)


# --- structural rules ----------------------------------------------------------------------

OK_TEXT = "您的验证码是123456，5分钟内有效。"


def structure_rules(report: ContentReport) -> set[str]:
    return {f.rule for f in report.findings if f.group == "structure"}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param(["123456"], set(), id="digits"),
        pytest.param(["Ab_12345"], set(), id="eight-word-chars"),
        pytest.param([], {"structure.variable_count"}, id="no-variable"),
        pytest.param(["123456", "5"], {"structure.variable_count"}, id="two-variables"),
        pytest.param(["123456789"], {"structure.code_format"}, id="nine-chars"),
        pytest.param(["12-34"], {"structure.code_format"}, id="dash"),
        pytest.param([""], {"structure.code_format"}, id="empty"),
        pytest.param(["t.cn/x"], {"structure.code_format", "structure.short_link"}, id="short"),
        pytest.param(
            ["a.example.com"], {"structure.code_format", "structure.variable_link"}, id="url"
        ),
        pytest.param(
            ["13800138000"], {"structure.code_format", "structure.variable_phone"}, id="mobile"
        ),
        pytest.param(["qq:12345"], {"structure.code_format", "structure.variable_phone"}, id="qq"),
        pytest.param(
            ["【官方】"], {"structure.code_format", "structure.variable_brackets"}, id="cn"
        ),
        pytest.param(["[x]"], {"structure.code_format", "structure.variable_brackets"}, id="sq"),
        pytest.param(["12'34"], {"structure.code_format", "structure.variable_chars"}, id="quote"),
        pytest.param(["{1}"], {"structure.code_format", "structure.variable_chars"}, id="brace"),
    ],
)
def test_variable_rules(policy: ContentPolicy, params: list[str], expected: set[str]) -> None:
    report = policy.check_message(OK_TEXT, params, SIGNATURE)
    assert structure_rules(report) == expected
    assert report.blocked == bool(expected)


def test_marketing_appended_to_code_is_violation_6(policy: ContentPolicy) -> None:
    report = check(policy, "您的验证码是123456。双十一大促，全场包邮！")
    assert report.blocked
    assert {f.row for f in report.blocking} == {6}
    assert {f.severity for f in report.blocking} == {Severity.SERIOUS}


@pytest.mark.parametrize(
    ("text", "signature", "expected", "action"),
    [
        pytest.param("验证码123456。", SIGNATURE, set(), None, id="configured-added-by-provider"),
        pytest.param(f"【{SIGNATURE}】验证码123456。", SIGNATURE, set(), None, id="matches"),
        pytest.param(f"验证码123456。【{SIGNATURE}】", SIGNATURE, set(), None, id="trailing"),
        pytest.param(
            "【别的公司】验证码123456。",
            SIGNATURE,
            {"structure.signature_mismatch"},
            Action.BLOCK,
            id="mismatch",
        ),
        pytest.param(
            "验证码123456。", None, {"structure.signature_missing"}, Action.FLAG, id="missing"
        ),
        pytest.param("【示例】验证码123456。", None, set(), None, id="in-text-only"),
    ],
)
def test_signature_is_violation_1(
    policy: ContentPolicy,
    text: str,
    signature: str | None,
    expected: set[str],
    action: Action | None,
) -> None:
    report = policy.check_message(text, ["123456"], signature)
    assert structure_rules(report) == expected
    for finding in report.findings:
        assert finding.row == 1
        assert finding.action is action


@pytest.mark.parametrize(
    ("text", "rule", "action"),
    [
        pytest.param(
            "验证码123456，详见 https://example.com/a", "structure.link", Action.BLOCK, id="url"
        ),
        pytest.param("验证码123456 www.example.cn", "structure.link", Action.BLOCK, id="www"),
        pytest.param("验证码123456 example。com", "structure.link", Action.BLOCK, id="ideo-dot"),
        pytest.param(
            "验证码123456 ｅｘａｍｐｌｅ．ｃｏｍ", "structure.link", Action.BLOCK, id="fw"
        ),
        pytest.param("验证码123456 bit.ly/2x", "structure.short_link", Action.BLOCK, id="short"),
        pytest.param(
            "验证码123456【通知】请查收", "structure.brackets", Action.BLOCK, id="brackets"
        ),
        pytest.param("验证码123456 ★有效", "structure.special_symbols", Action.FLAG, id="star"),
        pytest.param("您好，123456，请输入。", "structure.code_keyword", Action.FLAG, id="no-word"),
    ],
)
def test_text_rules(policy: ContentPolicy, text: str, rule: str, action: Action) -> None:
    report = check(policy, text)
    found = [f for f in report.findings if f.rule == rule]
    assert found and found[0].action is action


def test_link_span_is_in_original_text(policy: ContentPolicy) -> None:
    text = f"【{SIGNATURE}】验证码123456，详见 t.cn/AbC 。"
    report = check(policy, text)
    (finding,) = [f for f in report.findings if f.rule == "structure.short_link"]
    assert text[finding.start : finding.end] == "t.cn/AbC"


@pytest.mark.parametrize(
    ("length", "segments"),
    [(0, 0), (1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (500, 8)],
)
def test_segments(length: int, segments: int) -> None:
    assert count_segments(length) == segments


def test_length_counts_the_signature_with_brackets(policy: ContentPolicy) -> None:
    body = "验证码123456，" + "请" * 56  # 66 characters
    assert len(body) == 66
    report = policy.check_message(body, ["123456"], SIGNATURE)  # + 【示例科技】 = 72
    assert (report.length, report.segments) == (72, 2)
    inline = policy.check_message(f"【{SIGNATURE}】{body}", ["123456"], SIGNATURE)
    assert (inline.length, inline.segments) == (72, 2)


def test_too_long_blocks(policy: ContentPolicy) -> None:
    report = check(policy, "验证码123456" + "。" * 500)
    assert "structure.too_long" in {f.rule for f in report.blocking}


# --- positions and the report --------------------------------------------------------------


def test_positions_after_signature_and_in_params(policy: ContentPolicy) -> None:
    text = f"【{SIGNATURE}】验证码123456，赌场"
    report = policy.check_message(text, ["123456", "加微信"], SIGNATURE)
    in_text = next(f for f in report.findings if f.rule == "gambling.betting")
    assert (in_text.target, text[in_text.start : in_text.end]) == ("text", "赌场")
    in_param = next(f for f in report.findings if f.rule == "traffic.contact")
    assert (in_param.target, in_param.span) == ("params[1]", (0, 3))


def test_findings_are_ordered_block_first_then_severity(policy: ContentPolicy) -> None:
    report = check(policy, "验证码123456，赌场 ★ 贷款 优惠")
    actions = [f.action for f in report.findings]
    assert actions == sorted(actions, key=lambda a: a is Action.FLAG)
    assert report.blocking[0].severity is Severity.CRITICAL
    assert report.flags and all(f.action is Action.FLAG for f in report.flags)


def test_finding_carries_no_matched_text(policy: ContentPolicy) -> None:
    report = check(policy, "验证码123456，赌场")
    values = [str(getattr(report.findings[0], f.name)) for f in dataclasses.fields(Finding)]
    assert not any("赌" in value for value in values)


def test_flag_only_records(policy: ContentPolicy) -> None:
    report = check(policy, "验证码123456，您正在登录医院挂号系统。")
    assert not report.blocked
    assert {f.rule for f in report.flags} == {"medical.health"}


# --- template lint -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param("您的验证码为${1}，5分钟内有效。", set(), id="huawei-positional"),
        pytest.param("您的验证码为${NUM_6}，请勿泄露。", set(), id="huawei-typed"),
        pytest.param("Your code is {code}. It expires in {minutes} minutes.", set(), id="ours"),
        pytest.param("验证码${1}，有效期${2}分钟。", {"structure.variable_count"}, id="two"),
        pytest.param(
            "欢迎使用本服务。", {"structure.variable_count", "structure.code_keyword"}, id="none"
        ),
        pytest.param(
            "验证码${1}，详见www.${2}.cn",
            {"structure.variable_count", "structure.link"},
            id="url-var",
        ),
        pytest.param("【示例】验证码${1}", {"structure.brackets"}, id="signature-in-template"),
    ],
)
def test_lint_template_structure(policy: ContentPolicy, template: str, expected: set[str]) -> None:
    assert structure_rules(policy.lint_template(template)) == expected


def test_lint_template_keywords_positions_and_length(policy: ContentPolicy) -> None:
    template = "验证码${1}，注册就送红包！"
    report = policy.lint_template(template, signature=SIGNATURE)
    rules = {f.rule: f for f in report.findings}
    assert {"traffic.acquisition", "marketing.promotion"} <= set(rules)
    acquisition = rules["traffic.acquisition"]
    assert acquisition.target == "template"
    assert template[acquisition.start : acquisition.end] == "注册就送"
    # 11 fixed characters + 8 (the code at its maximum) + 6 for 【示例科技】
    assert report.length == 11 + 8 + 6


def test_lint_template_does_not_join_across_a_variable(policy: ContentPolicy) -> None:
    assert keyword_rules(policy.lint_template("验证码${1}赌${2}博")) == set()


# --- building ------------------------------------------------------------------------------


def test_policy_is_compiled_once_per_rules_version() -> None:
    assert load_policy() is load_policy()


def test_operator_rules_extend_and_disable() -> None:
    operator = """
schema = 1
disable = ["medical.health", "structure.signature_missing"]
[extend."gambling.betting"]
keywords = ["lucky spin"]
[[group.brand.rules]]
id = "brand.competitor"
row = 8
action = "flag"
keywords = ["对手公司"]
"""
    policy = ContentPolicy.from_rules(parse_rules(shipped_rules_text(), operator))
    report = policy.check_message("验证码123456，Lucky-Spin 对手公司 医院", ["123456"], None)
    assert {f.rule for f in report.findings} == {"gambling.betting", "brand.competitor"}
    assert [f.rule for f in report.blocking] == ["gambling.betting"]


def test_policy_without_converter_still_matches_simplified() -> None:
    policy = ContentPolicy.from_rules(parse_rules(shipped_rules_text()))
    assert keyword_rules(policy.check_message("验证码123456，赌场", ["123456"], SIGNATURE)) == {
        "gambling.betting"
    }


def test_too_short_keyword_is_refused() -> None:
    operator = """
schema = 1
[extend."vice.drugs"]
keywords = ["毒"]
"""
    with pytest.raises(ValueError, match="at least two"):
        ContentPolicy.from_rules(parse_rules(shipped_rules_text(), operator))


def test_unknown_params_skip_the_variable_checks(policy: ContentPolicy) -> None:
    report = policy.check_message("您的验证码是123456，5分钟内有效。", None, SIGNATURE)
    assert report.clean
    assert "structure.variable_count" in structure_rules(
        policy.check_message("您的验证码是123456，5分钟内有效。", [], SIGNATURE)
    )
