"""The content check of every outgoing message: normalise, match keywords, apply structural rules.

The provider shuts accounts down for banned content (``huawei-sms.md`` §8), so every message is
checked before it leaves and operators can lint a template before filing it. This module is pure:
rules arrive as a :class:`RuleSet` (``otp_service.content_rules`` reads the TOML files) and an
optional traditional→simplified converter arrives as a plain callable, so nothing here reads a
file or imports a conversion library.

Matching works on a *compact* form of the text, one normalised character per kept character,
with a parallel list mapping each compact position back to the original index:

1. per character: Unicode NFKC (full-width → half-width, compatibility forms), case folding,
   diacritics dropped (NFD minus combining marks), homoglyphs (Cyrillic/Greek look-alikes → Latin,
   ``l`` → ``i`` so ``1``/``l``/``I`` agree), traditional → simplified Chinese;
2. spaces, punctuation, symbols, control and zero-width characters are removed, so ``赌 博``,
   ``赌.博``, ``赌\\u200b博`` and ``c-a-s-i-n-o`` all become one run;
3. a second pass maps digits *between two Latin letters* to the letters they imitate
   (``v1agra``, ``p0rn``); digits elsewhere (codes, phone numbers) are never touched.

One Aho–Corasick automaton (``pyahocorasick``), built once per rules version, finds every
keyword in one scan. Removing separators would make Latin keywords match across words ("is ex"
→ "sex"), so Latin edges must sit on a word boundary of the *original* text, and short Latin
keywords accept separators inside only where the keyword itself has them or between every
letter (``s e x``). Chinese has no word boundaries, so CJK keywords match anywhere; ``allow``
phrases cancel a match that lies inside them (``集中奖励`` is not ``中奖``).
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

import ahocorasick

__all__ = [
    "Action",
    "ContentPolicy",
    "ContentReport",
    "Finding",
    "KeywordRule",
    "RuleSet",
    "STRUCTURAL_CHECKS",
    "Severity",
    "StructuralRule",
    "count_segments",
    "default_severity",
]


class Action(enum.Enum):
    """What a matching rule does to a send."""

    BLOCK = "block"
    FLAG = "flag"


class Severity(enum.Enum):
    """The provider's penalty class of a violation row (§8.1: 一般 / 严重 / 重大)."""

    MINOR = "minor"
    SERIOUS = "serious"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK: Final = {Severity.MINOR: 1, Severity.SERIOUS: 2, Severity.CRITICAL: 3}
#: Module-level alias: looking a member up on an enum class is slower than a global.
_BLOCK: Final = Action.BLOCK
_CRITICAL: Final = Severity.CRITICAL
_SERIOUS: Final = Severity.SERIOUS
_ROW_SEVERITY: Final = {
    1: Severity.MINOR,
    2: Severity.MINOR,
    3: Severity.MINOR,
    4: Severity.SERIOUS,
    5: Severity.SERIOUS,
    6: Severity.SERIOUS,
    7: Severity.SERIOUS,
    8: Severity.CRITICAL,
    9: Severity.CRITICAL,
}

#: Structural checks the policy implements; the rules file configures row, action and limits.
STRUCTURAL_CHECKS: Final = frozenset(
    {
        "signature_missing",
        "signature_mismatch",
        "brackets",
        "link",
        "short_link",
        "special_symbols",
        "code_keyword",
        "too_long",
        "variable_count",
        "code_format",
        "variable_link",
        "variable_phone",
        "variable_brackets",
        "variable_chars",
    }
)

#: Single-segment and per-segment sizes on Chinese-mainland routes (§9).
SINGLE_SEGMENT_CHARS: Final = 70
MULTI_SEGMENT_CHARS: Final = 67
#: Latin keywords shorter than this accept separators inside only in a safe pattern.
_SHORT_LATIN: Final = 6
#: Distinct characters memoised per policy; beyond it, folding is computed without caching.
_FOLD_CACHE_LIMIT: Final = 65_536
#: Stands in for a template variable while linting: kept by folding, never in a keyword.
_VARIABLE_MASK: Final = "\ue000"


def default_severity(row: int) -> Severity:
    """The §8.1 severity of a violation row (1–9)."""
    try:
        return _ROW_SEVERITY[row]
    except KeyError:
        raise ValueError(f"violation row must be 1-9, got {row!r}") from None


def count_segments(length: int) -> int:
    """Billed segments of a Chinese-mainland message: ≤ 70 chars → 1, else ceil(n / 67)."""
    if length <= SINGLE_SEGMENT_CHARS:
        return 1 if length > 0 else 0
    return math.ceil(length / MULTI_SEGMENT_CHARS)


@dataclass(frozen=True, slots=True)
class KeywordRule:
    """A named list of keywords from one prohibited group (§8.2)."""

    id: str
    group: str
    row: int
    severity: Severity
    action: Action
    keywords: tuple[str, ...]
    #: Phrases inside which a match of this rule is not a violation.
    allow: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True)
class StructuralRule:
    """Configuration of one of the :data:`STRUCTURAL_CHECKS` (§6.2, §6.3, §8.3)."""

    check: str
    row: int
    severity: Severity
    action: Action
    description: str = ""
    #: The check's numeric limit where it has one (``code_format``: max chars, ``too_long``).
    limit: int | None = None

    @property
    def id(self) -> str:
        return f"structure.{self.check}"


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Everything a policy is built from; ``version`` identifies it (a content hash)."""

    version: str
    keyword_rules: tuple[KeywordRule, ...]
    structural_rules: tuple[StructuralRule, ...]
    #: Phrases that cancel a match of any rule lying inside them.
    allow: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule that matched, with where it matched in the ORIGINAL text of ``target``.

    ``target`` is ``"text"`` (the rendered message), ``"params[i]"`` (a template parameter),
    ``"template"`` (a linted template) or ``"signature"``. The matched text itself is not kept,
    so a finding can be logged or returned without leaking the content.
    """

    rule: str
    group: str
    row: int
    severity: Severity
    action: Action
    start: int
    end: int
    target: str = "text"
    description: str = ""

    @property
    def blocks(self) -> bool:
        return self.action is Action.BLOCK

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)


#: The setters of :class:`Finding`'s slots, in field order (see :func:`_keyword_finding`).
(
    _SET_RULE,
    _SET_GROUP,
    _SET_ROW,
    _SET_SEVERITY,
    _SET_ACTION,
    _SET_START,
    _SET_END,
    _SET_TARGET,
    _SET_DESCRIPTION,
) = (getattr(Finding, field.name).__set__ for field in dataclasses.fields(Finding))


def _keyword_finding(rule: KeywordRule, start: int, end: int, target: str) -> Finding:
    """A finding of ``rule``, built through the slots' own setters.

    A frozen dataclass's ``__init__`` assigns each field with ``object.__setattr__``, a generic
    attribute lookup per field: about 1.8 µs a finding, a quarter of the check of a message with
    six matches. The slot setters store the same values in half the time. A new field of
    :class:`Finding` breaks the unpacking above at import, so the two cannot drift apart.
    """
    finding = object.__new__(Finding)
    _SET_RULE(finding, rule.id)
    _SET_GROUP(finding, rule.group)
    _SET_ROW(finding, rule.row)
    _SET_SEVERITY(finding, rule.severity)
    _SET_ACTION(finding, rule.action)
    _SET_START(finding, start)
    _SET_END(finding, end)
    _SET_TARGET(finding, target)
    _SET_DESCRIPTION(finding, rule.description)
    return finding


@dataclass(frozen=True, slots=True)
class ContentReport:
    """Findings of one check, most serious first, plus the billed length of the message."""

    findings: tuple[Finding, ...]
    #: Characters as the provider counts them, signature and its brackets included.
    length: int
    segments: int
    rules_version: str

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.action is Action.BLOCK)

    @property
    def flags(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.action is Action.FLAG)

    @property
    def blocked(self) -> bool:
        return any(f.action is Action.BLOCK for f in self.findings)

    @property
    def clean(self) -> bool:
        return not self.findings


# --- normalisation -------------------------------------------------------------------------

#: Look-alikes that NFKC leaves alone, after case folding (so lower-case keys only).
_HOMOGLYPHS: Final = {
    # Cyrillic
    "а": "a", "в": "b", "г": "r", "е": "e", "к": "k",
    "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y",
    "х": "x", "ь": "b", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "ӏ": "i", "һ": "h", "ү": "y", "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v",
    "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "μ": "u",
    "σ": "o", "ς": "c",
    # Latin variants without a decomposition
    "ı": "i", "ł": "i", "ø": "o", "đ": "d", "ħ": "h", "ŧ": "t", "ɑ": "a", "ǀ": "i",
    "ƅ": "b", "ɩ": "i", "ʟ": "i", "ɪ": "i",
    # one letter for the 1 / l / I family, so "1oan", "Ioan" and "loan" agree
    "l": "i",
}  # fmt: skip

#: Digits imitating letters; applied only between two Latin letters.
_LEET: Final = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b"})
#: One or two digits between Latin letters. Starting with the digit (not a lookbehind) lets the
#: regex engine skip to candidate digits instead of trying every position.
_INTERIOR_DIGITS: Final = re.compile(r"[0-9](?<=[a-z][0-9])[0-9]?(?=[a-z])")

#: Unicode categories dropped by folding: separators, punctuation, symbols, controls, format
#: (zero-width and bidi marks), unassigned, surrogates, and combining marks.
_DROPPED_CATEGORIES: Final = frozenset(
    {"Zs", "Zl", "Zp", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So",
     "Cc", "Cf", "Cn", "Cs", "Mn", "Mc", "Me"}
)  # fmt: skip


def _fold_char(ch: str, to_simplified: Callable[[str], str] | None) -> str:
    """The normalised form of one original character: zero, one or several characters."""
    out: list[str] = []
    for composed in unicodedata.normalize("NFKC", ch):
        for c in unicodedata.normalize("NFD", composed.casefold()):
            if unicodedata.category(c) in _DROPPED_CATEGORIES:
                continue
            c = _HOMOGLYPHS.get(c, c)
            if to_simplified is not None and not c.isascii():
                c = to_simplified(c) or c
            out.append(c)
    return "".join(out)


#: What :class:`_FoldTable` maps a dropped character to, so that a folded text keeps one character
#: per original character unless one expands (``ß`` → ``ss``). Folding drops every control
#: character, so this one never stands for anything else.
_DROPPED: Final = "\x00"


class _FoldTable(dict[int, str]):
    """A ``str.translate`` table computed on first use of each character.

    ``str.translate`` looks characters up with ``__getitem__``, so ``__missing__`` lets the whole
    normalisation of a clean message run as one C-level call over memoised entries. A dropped
    character maps to :data:`_DROPPED` rather than to nothing: the folded text then still says
    which original characters were kept, and :meth:`ContentPolicy._origin` reads that at C speed
    instead of translating the text a second time.
    """

    __slots__ = ("_to_simplified",)

    def __init__(self, to_simplified: Callable[[str], str] | None) -> None:
        super().__init__()
        self._to_simplified = to_simplified
        for code in range(128):
            self[code] = _fold_char(chr(code), None) or _DROPPED

    def __missing__(self, key: int) -> str:
        folded = _fold_char(chr(key), self._to_simplified) or _DROPPED
        if len(self) < _FOLD_CACHE_LIMIT:
            self[key] = folded
        return folded


def _edge_class(ch: str) -> str | None:
    """Which word-boundary rule applies at a keyword edge: Latin-like letter, digit, or none."""
    if ch.isdigit():
        return "d"
    if ch.isalpha() and ord(ch) < 0x2E80:  # letters of alphabetic scripts, not CJK
        return "a"
    return None


class _EdgeTable(dict[str, str | None]):
    """:func:`_edge_class` memoised per character: the boundary checks of every Latin hit ask it
    about the neighbouring characters, and a dictionary lookup is several times cheaper."""

    __slots__ = ()

    def __missing__(self, key: str) -> str | None:
        edge = _edge_class(key)
        if len(self) < _FOLD_CACHE_LIMIT:
            self[key] = edge
        return edge


_EDGES: Final = _EdgeTable()


def _spell(compact: str) -> str:
    """``compact`` as its UTF-8 bytes, one character (``U+0000``–``U+00FF``) per byte.

    pyahocorasick finds a node's child by a linear scan, so a root with one child per distinct
    first character (thousands, with Chinese keywords) makes every step slow: 10,000 rules cost
    ~400 µs per message. Spelled in UTF-8 bytes, no node has more than 256 children, and below a
    lead byte at most 64. UTF-8 is self-synchronising (lead and continuation bytes are disjoint),
    so a keyword can only match on character boundaries. Two C-level codec calls spell a message
    several times faster than a per-character table would, and ASCII stays one unit per letter.
    """
    return compact.encode().decode("latin-1")


class _Entry(NamedTuple):
    """What the automaton knows about one normalised keyword or allow phrase of one rule."""

    rule: int  # index into the policy's keyword rules; -1 for a global allow phrase
    allow: bool
    length: int
    left: str | None  # edge classes needing a boundary
    right: str | None
    short_latin: bool
    word_gaps: frozenset[int]
    #: Whether :func:`_accept` can reject a hit (a word boundary or spacing rule applies); false
    #: for CJK keywords, which match anywhere.
    bounded: bool


#: A raw automaton hit: the entry, its compact span (end exclusive) and the compact text it is
#: in. A plain tuple: a scan makes one per hit, and a named tuple costs a Python-level call.
_Hit = tuple[_Entry, int, int, str]
#: An accepted match: the index of its rule and its compact span (end exclusive).
_Span = tuple[int, int, int]


# --- structural patterns -------------------------------------------------------------------

_TLDS = (
    "com|cn|net|org|info|biz|top|xyz|vip|club|shop|site|online|store|app|link|live|icu|ink|"
    "wang|ltd|fun|work|tech|asia|cc|tv|ly|gl|gd|im|io|ws|tk|ml|ga|cf|gq|su|ru|hk|tw|mo|uk|de|jp"
)
_URL: Final = re.compile(
    r"(?:https?|ftp)://[^\s<>\"'，。、；]+"
    r"|www\.[^\s<>\"'，。、；]+"
    rf"|(?<![a-z0-9@.-])(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:{_TLDS})"
    r"(?![a-z0-9-])(?:[/?#:][^\s<>\"'，。、；]*)?",
    re.IGNORECASE,
)
#: Cheap test run first: most messages contain nothing that could start a URL. Tested on the raw
#: text, so it also notices full-width spellings before they are mapped. It matches where one of
#: ``[:：][/／]{2}``, ``www[.。．]``, ``[a-z0-9][.。．][a-z]{2}`` (case-insensitive) or a full-width
#: letter or digit does, but starts with one case-sensitive character class and looks back from
#: there, so the engine jumps from one ``:``, dot or full-width character to the next instead of
#: trying four alternatives at every position (a Chinese message always has a ``。``).
_URL_HINT: Final = re.compile(
    r"[:：.。．ａ-ｚＡ-Ｚ０-９]"
    r"(?:(?<=[:：])[/／]{2}|(?<=(?i:www)[.。．])|(?<=(?i:[a-z0-9])[.。．])(?i:[a-z]{2})"
    r"|(?<=[ａ-ｚＡ-Ｚ０-９]))"
)
#: Something :data:`_URL` needs (``://``, ``www.`` or ``x.tld``), tested on the ASCII view before
#: the full pattern: the hint fires on any full-width letter, which evasions are full of.
_URL_VIEW_HINT: Final = re.compile(
    r"[:.](?:(?<=:)//|(?<=(?i:www)\.)|(?<=(?i:[a-z0-9])\.)(?i:[a-z]{2}))"
)
_SHORT_LINK_HOSTS: Final = frozenset(
    {
        "t.cn", "dwz.cn", "url.cn", "w.url.cn", "suo.im", "suo.nz", "mrw.so", "0x3.me",
        "bit.ly", "tinyurl.com", "goo.gl", "t.co", "ow.ly", "is.gd", "v.gd", "buff.ly",
        "rebrand.ly", "cutt.ly", "s.id", "t.ly", "tiny.cc", "shorturl.at", "rb.gy", "j.mp",
        "x.co", "lnkd.in", "t.me", "wa.me", "tb.cn", "m.tb.cn", "c.tb.cn", "u.nu", "qr.net",
        "reurl.cc", "sohu.gg", "6du.in", "kurl.ru", "clck.ru", "short.io", "bl.ink",
    }
)  # fmt: skip
_PHONE_OR_CONTACT: Final = re.compile(
    r"(?<!\d)(?:\+?86[-\s]?)?1[3-9]\d{9}(?!\d)"  # Chinese mobile
    r"|\+\d[\d\s-]{6,18}\d"  # any international number
    r"|(?<!\d)0\d{2,3}-\d{7,8}(?!\d)|(?<!\d)0\d{9,11}(?!\d)"  # Chinese landline
    r"|(?<!\d)[48]00[-\s]?\d{3}[-\s]?\d{4}(?!\d)"  # 400 / 800 numbers
    r"|(?:qq|wx|vx|wechat|weixin|微信|薇信|威信|v信|扣扣|企鹅)[:：号\s]*[a-z0-9_-]{5,}",
    re.IGNORECASE,
)
_BRACKETS: Final = re.compile(r"[【】\[\]［］〖〗〔〕]")
#: Brackets and special symbols in one pass over a message body.
_MARKS: Final = re.compile(
    r"(?P<brackets>[【】\[\]［］〖〗〔〕])|(?P<special_symbols>[¥￥★☆※√&＆]|\^_\^)"
)
#: The characters a :data:`_MARKS` match starts with: one character-class scan, which the
#: engine runs far faster than the alternation, rules out nearly every message.
_MARK_START: Final = re.compile(r"[【】\[\]［］〖〗〔〕¥￥★☆※√&＆^]")
_VARIABLE_CHARS: Final = re.compile(r"['{}‘’｛｝]")
_CODE_CHARS: Final = re.compile(r"[A-Za-z0-9_]+")
_SIGNATURE_HEAD: Final = re.compile(r"\A\s*(?:【([^【】]{1,32})】|\[([^\[\]]{1,32})\])")
_SIGNATURE_TAIL: Final = re.compile(r"(?:【([^【】]{1,32})】|\[([^\[\]]{1,32})\])\s*\Z")
_PROVIDER_VARIABLE: Final = re.compile(r"\$\{[^{}]*\}|\{code\}")
_LOCAL_FIELD: Final = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
#: A local field such as ``{minutes}`` counts this many characters when linting.
_LOCAL_FIELD_CHARS: Final = 2
#: One of these must name the purpose of a verification message (§6.2; English for i18n).
_CODE_WORDS: Final = (
    "验证码", "注册码", "校验码", "动态码", "確認碼", "code", "otp", "passcode", "pin",
    "one-time password",
)  # fmt: skip
_DEFAULT_CODE_MAX = 8
_DEFAULT_MAX_CHARS = 500


class ContentPolicy:
    """The compiled rules: one automaton plus the structural checks. Thread-safe, reusable.

    Build it once per rules version (it compiles every keyword); checking a message afterwards
    allocates little and takes microseconds.
    """

    def __init__(
        self, rules: RuleSet, *, to_simplified: Callable[[str], str] | None = None
    ) -> None:
        self.rules = rules
        self._fold = _FoldTable(to_simplified)
        self._keyword_rules = rules.keyword_rules
        self._structural = {r.check: r for r in rules.structural_rules}
        unknown = set(self._structural) - STRUCTURAL_CHECKS
        if unknown:
            raise ValueError(f"unknown structural checks: {', '.join(sorted(unknown))}")
        self._automaton = ahocorasick.Automaton()
        self.keyword_count = 0
        entries: dict[str, list[_Entry]] = {}
        for index, rule in enumerate(rules.keyword_rules):
            for keyword in rule.keywords:
                compact, entry = self._compile(keyword, index, allow=False)
                entries.setdefault(compact, []).append(entry)
                self.keyword_count += 1
            for phrase in rule.allow:
                compact, entry = self._compile(phrase, index, allow=True)
                entries.setdefault(compact, []).append(entry)
        for phrase in rules.allow:
            compact, entry = self._compile(phrase, -1, allow=True)
            entries.setdefault(compact, []).append(entry)
        for compact, found in entries.items():
            keywords = tuple(entry for entry in found if not entry.allow)
            allows = tuple(entry for entry in found if entry.allow)
            self._automaton.add_word(_spell(compact), (keywords, allows))
        self._has_words = bool(entries)
        if self._has_words:
            self._automaton.make_automaton()
        # One alternation finds any code word in a single scan (ten ``in`` tests took longer).
        self._code_word = re.compile(
            "|".join(re.escape(self._fold_text(w)[1]) for w in _CODE_WORDS)
        )
        self._code_max = self._limit("code_format", _DEFAULT_CODE_MAX)
        self._max_chars = self._limit("too_long", _DEFAULT_MAX_CHARS)
        # All-digit parameters (the usual code) skip the keyword scan unless a keyword could
        # match digits alone.
        self._digit_keywords = any(compact.isdigit() for compact in entries)

    @classmethod
    def from_rules(
        cls, rules: RuleSet, *, to_simplified: Callable[[str], str] | None = None
    ) -> ContentPolicy:
        """Compile ``rules``; ``to_simplified`` maps one traditional character to simplified.

        :raises ValueError: a keyword normalises to fewer than two characters (it would match
            inside innocent words) or a structural check is unknown.
        """
        return cls(rules, to_simplified=to_simplified)

    @property
    def version(self) -> str:
        return self.rules.version

    @property
    def rule_count(self) -> int:
        return len(self._keyword_rules) + len(self._structural)

    def normalise(self, text: str) -> tuple[str, tuple[int, ...]]:
        """The compact matching form of ``text`` and, per compact character, its original index.

        Exposed for the CLI and tests; the digit-between-letters pass is not applied here.
        """
        aligned, compact = self._fold_text(text)
        return compact, tuple(self._origin(text, aligned))

    # -- public checks ----------------------------------------------------------------------

    def check_message(
        self, text: str, params: Sequence[str] | None = (), signature: str | None = None
    ) -> ContentReport:
        """Check a rendered verification message and the template parameters sent with it.

        :param text: the message as rendered; a leading or trailing ``【name】`` is its signature.
        :param params: the provider's template parameters; the first is the code. ``None``
            means unknown (a text checked on its own): the variable checks are skipped.
        :param signature: the configured signature (``OTP_HUAWEI_SIGNATURE``), added by the
            provider when the text carries none.
        """
        findings: list[Finding] = []
        body_start, body_end, rendered = _split_signature(text)
        if rendered is not None:
            if signature is not None and rendered != signature:
                self._structure(findings, "signature_mismatch", *_signature_span(text), "text")
            length = len(text)
        else:
            if signature is None or not signature.strip():
                self._structure(findings, "signature_missing", 0, 0, "text")
            length = len(text) + (len(signature) + 2 if signature else 0)
        body = text[body_start:body_end]
        folded = self._fold_text(body)
        compact = folded[1]
        findings.extend(self._scan(body, "text", body_start, folded))
        self._check_text_structure(findings, body, body_start, "text")
        if not self._code_word.search(compact):
            self._structure(findings, "code_keyword", 0, 0, "text")
        self._check_length(findings, length, "text")
        if params is None:
            return self._report(findings, length)
        if len(params) != 1:
            self._structure(findings, "variable_count", 0, 0, "params")
        for index, param in enumerate(params):
            target = f"params[{index}]"
            if param.isascii() and param.isdigit():
                # Nothing but digits cannot hold a link, a bracket or a banned character; only
                # the length can be wrong (phone numbers are longer than any code).
                if index == 0 and len(param) > self._code_max:
                    self._structure(findings, "code_format", 0, len(param), target)
                if len(param) > _DEFAULT_CODE_MAX:
                    self._check_param(findings, param, target, is_code=False)
                if self._digit_keywords:
                    findings.extend(self._scan(param, target, 0))
                continue
            findings.extend(self._scan(param, target, 0))
            self._check_param(findings, param, target, is_code=index == 0)
        return self._report(findings, length)

    def lint_template(self, template: str, signature: str | None = None) -> ContentReport:
        """Check a template before it is filed with the provider.

        ``${…}`` and ``{code}`` are provider variables (a verification template needs exactly
        one); any other ``{name}`` is a field the service fills in itself, so it counts as fixed
        text of :data:`_LOCAL_FIELD_CHARS` characters.
        """
        findings: list[Finding] = []
        variables = list(_PROVIDER_VARIABLE.finditer(template))
        locals_ = [m for m in _LOCAL_FIELD.finditer(template) if m.group() != "{code}"]
        masked = _mask(template, [m.span() for m in (*variables, *locals_)])
        if len(variables) != 1:
            start, end = variables[1].span() if len(variables) > 1 else (0, 0)
            self._structure(findings, "variable_count", start, end, "template")
        folded = self._fold_text(masked)
        compact = folded[1]
        findings.extend(self._scan(masked, "template", 0, folded))
        self._check_text_structure(findings, masked, 0, "template")
        if not self._code_word.search(compact):
            self._structure(findings, "code_keyword", 0, 0, "template")
        code_max = self._code_max
        length = (
            len(template)
            - sum(m.end() - m.start() for m in (*variables, *locals_))
            + code_max * len(variables)
            + _LOCAL_FIELD_CHARS * len(locals_)
            + (len(signature) + 2 if signature else 0)
        )
        self._check_length(findings, length, "template")
        return self._report(findings, length)

    # -- structural checks ------------------------------------------------------------------

    def _check_text_structure(
        self, findings: list[Finding], body: str, offset: int, target: str
    ) -> None:
        # Verification templates may carry no link at all (§6.2); short links are worse (§8.2).
        for match in _urls(body):
            check = "short_link" if _is_short_link(match.group()) else "link"
            start, end = match.start() + offset, match.end() + offset
            self._structure(findings, check, start, end, target)
        if _MARK_START.search(body):
            for match in _MARKS.finditer(body):
                check = match.lastgroup or "brackets"
                start, end = match.start() + offset, match.end() + offset
                self._structure(findings, check, start, end, target)

    def _check_param(self, findings: list[Finding], param: str, target: str, is_code: bool) -> None:
        if is_code:
            limit = self._code_max
            if len(param) > limit or not _CODE_CHARS.fullmatch(param):
                self._structure(findings, "code_format", 0, len(param), target)
        for match in _urls(param):
            check = "short_link" if _is_short_link(match.group()) else "variable_link"
            self._structure(findings, check, match.start(), match.end(), target)
        for match in _PHONE_OR_CONTACT.finditer(param):
            self._structure(findings, "variable_phone", match.start(), match.end(), target)
        for match in _BRACKETS.finditer(param):
            self._structure(findings, "variable_brackets", match.start(), match.end(), target)
        for match in _VARIABLE_CHARS.finditer(param):
            self._structure(findings, "variable_chars", match.start(), match.end(), target)

    def _check_length(self, findings: list[Finding], length: int, target: str) -> None:
        if length > self._max_chars:
            self._structure(findings, "too_long", 0, 0, target)

    def _limit(self, check: str, default: int) -> int:
        rule = self._structural.get(check)
        return rule.limit if rule is not None and rule.limit is not None else default

    def _structure(
        self, findings: list[Finding], check: str, start: int, end: int, target: str
    ) -> None:
        rule = self._structural.get(check)
        if rule is None:  # disabled by the operator
            return
        findings.append(
            Finding(
                rule=rule.id,
                group="structure",
                row=rule.row,
                severity=rule.severity,
                action=rule.action,
                start=start,
                end=end,
                target=target,
                description=rule.description,
            )
        )

    def _report(self, findings: list[Finding], length: int) -> ContentReport:
        # keyword findings are unique per rule and span; checks run once
        if len(findings) > 1:
            findings.sort(key=_report_order)
        # Positional: a frozen dataclass's keyword call is measurably slower.
        return ContentReport(tuple(findings), length, count_segments(length), self.rules.version)

    # -- keyword matching -------------------------------------------------------------------

    def _compile(self, phrase: str, rule: int, *, allow: bool) -> tuple[str, _Entry]:
        aligned, compact = self._fold_text(phrase)
        if len(compact) < 2:
            raise ValueError(
                f"keyword {phrase!r} normalises to {compact!r}: at least two letters or "
                "characters are needed, or it would match inside innocent words"
            )
        origin = self._origin(phrase, aligned)
        word_gaps = frozenset(k for k in range(len(compact) - 1) if origin[k + 1] - origin[k] > 1)
        latin = all(_edge_class(c) is not None for c in compact)
        left, right = _edge_class(compact[0]), _edge_class(compact[-1])
        short_latin = latin and len(compact) < _SHORT_LATIN
        entry = _Entry(
            rule=rule,
            allow=allow,
            length=len(compact),
            left=left,
            right=right,
            short_latin=short_latin,
            word_gaps=word_gaps,
            bounded=left is not None or right is not None or short_latin,
        )
        return compact, entry

    def _fold_text(self, text: str) -> tuple[str, str]:
        """``text`` folded with a :data:`_DROPPED` per dropped character, and its compact form."""
        aligned = text.translate(self._fold)
        return aligned, aligned.replace(_DROPPED, "")

    def _origin(self, text: str, aligned: str) -> list[int]:
        """Per compact character, the index in ``text`` it comes from (``aligned`` is its fold)."""
        if len(aligned) == len(text):
            # Nothing expanded: encoded, a dropped character is the only zero byte.
            return list(itertools.compress(range(len(text)), aligned.encode("ascii", "replace")))
        fold = self._fold
        origin: list[int] = []
        for index, ch in enumerate(text):
            folded = fold[ord(ch)]
            if folded != _DROPPED:
                origin.extend([index] * len(folded))
        return origin

    def _hits(self, compact: str, hits: list[_Hit], allowed: list[_Hit]) -> None:
        """Append the automaton's keyword hits in ``compact`` to ``hits``, allow phrases' to
        ``allowed`` (the automaton keeps them apart, so a scan never sorts them out)."""
        encoded = compact.encode()
        one_byte_each = len(encoded) == len(compact)
        # The automaton counts bytes (see :func:`_spell`) and reports hits in text order, each
        # ending on a character boundary: characters are counted from the previous hit on.
        end = counted = 0
        for last, (keywords, allows) in self._automaton.iter(encoded.decode("latin-1")):
            if one_byte_each:
                end = last + 1
            elif last >= counted:
                end += len(encoded[counted : last + 1].decode())
                counted = last + 1
            for entry in keywords:
                hits.append((entry, end - entry.length, end, compact))
            for entry in allows:
                allowed.append((entry, end - entry.length, end, compact))

    def _scan(
        self, text: str, target: str, offset: int, folded: tuple[str, str] | None = None
    ) -> list[Finding]:
        """Keyword findings in ``text``; ``folded`` is its :meth:`_fold_text` if already known."""
        if not self._has_words:
            return []
        aligned, compact = self._fold_text(text) if folded is None else folded
        hits: list[_Hit] = []
        allowed: list[_Hit] = []
        self._hits(compact, hits, allowed)
        swapped = _swap_interior_digits(compact)
        if swapped is not None:
            self._hits(swapped, hits, allowed)
        if not hits:
            return []
        origin = self._origin(text, aligned)
        findings: list[Finding] = []
        for index, start, end in _outermost(_accepted(hits, allowed, origin)):
            rule = self._keyword_rules[index]
            findings.append(
                _keyword_finding(rule, origin[start] + offset, origin[end - 1] + 1 + offset, target)
            )
        return findings


def _swap_interior_digits(compact: str) -> str | None:
    """``compact`` with digits between Latin letters read as the letters they imitate (``v1agra``);
    ``None`` if it has no such digits.

    The second pass of a scan matches this text. Only digits between two Latin letters change, so
    codes and phone numbers never do, and positions stay one-to-one.
    """
    swapped, count = _INTERIOR_DIGITS.subn(_leet, compact)
    return swapped if count else None


def _leet(match: re.Match[str]) -> str:
    return match.group().translate(_LEET)


def _accepted(hits: list[_Hit], allowed: list[_Hit], origin: Sequence[int]) -> set[_Span]:
    """The rule and compact span of every hit that is a real match and not inside an allow phrase.

    Both passes of a scan find most keywords twice, and several keywords of a rule can share a
    span; a span already accepted is skipped before the (costlier) word-level checks.
    """
    spans: set[_Span] = set()
    for hit in hits:
        entry, start, end, source = hit
        span = (entry.rule, start, end)
        if span in spans or (entry.bounded and not _accept(hit, origin)):
            continue
        # An allow phrase cancels only hits of its own pass: it is compared by compact identity.
        if allowed and any(
            a_start <= start and end <= a_end and a_entry.rule in (-1, entry.rule)
            for a_entry, a_start, a_end, a_source in allowed
            if a_source is source
        ):
            continue
        spans.add(span)
    return spans


def _report_order(finding: Finding) -> tuple[bool, int, str, int, str]:
    """Blocks first, then the most severe, then by target, position and rule.

    Reads the fields rather than :attr:`Finding.blocks` and :attr:`Severity.rank`, and compares
    severities by identity: a report sorts every finding, each property is a Python-level call,
    and so is hashing an enum member.
    """
    severity = finding.severity
    return (
        finding.action is not _BLOCK,
        -3 if severity is _CRITICAL else -2 if severity is _SERIOUS else -1,
        finding.target,
        finding.start,
        finding.rule,
    )


def _outermost(spans: set[_Span]) -> list[_Span]:
    """Spans not inside another span of the same rule (优惠 inside 优惠券), by rule and position."""
    kept: list[_Span] = []
    # In (rule, start, end) order, the kept spans of a rule end in increasing order, so a span is
    # inside one of them iff it is inside the last; with an equal start, the later span is longer.
    for span in sorted(spans):
        if kept:
            rule, start, end = kept[-1]
            if rule == span[0]:
                if start == span[1]:
                    kept[-1] = span
                    continue
                if span[2] <= end:
                    continue
        kept.append(span)
    return kept


def _accept(hit: _Hit, origin: Sequence[int]) -> bool:
    """Whether a raw automaton hit is a real match at word level (see the module docstring)."""
    entry, start, end, compact = hit
    if entry.left is not None and start > 0:
        before = compact[start - 1]
        if _EDGES[before] == entry.left and origin[start] - origin[start - 1] <= 1:
            return False
    if entry.right is not None and end < len(compact):
        after = compact[end]
        if _EDGES[after] == entry.right and origin[end] - origin[end - 1] <= 1:
            return False
    if entry.short_latin:
        gaps = {k for k in range(entry.length - 1) if origin[start + k + 1] - origin[start + k] > 1}
        if gaps and not gaps <= entry.word_gaps and len(gaps) != entry.length - 1:
            return False
    return True


def _split_signature(text: str) -> tuple[int, int, str | None]:
    """(body start, body end, signature name) of a rendered message."""
    if "】" not in text and "]" not in text:  # both patterns need one; searching costs more
        return 0, len(text), None
    head = _SIGNATURE_HEAD.match(text)
    if head is not None:
        return head.end(), len(text), (head.group(1) or head.group(2)).strip()
    tail = _SIGNATURE_TAIL.search(text)
    if tail is not None:
        return 0, tail.start(), (tail.group(1) or tail.group(2)).strip()
    return 0, len(text), None


def _signature_span(text: str) -> tuple[int, int]:
    match = _SIGNATURE_HEAD.match(text) or _SIGNATURE_TAIL.search(text)
    assert match is not None  # noqa: S101 - only called when a signature was found
    return match.start(), match.end()


class _UrlViewTable(dict[int, str]):
    """Memoised per-character map for :func:`_url_view` (same idea as :class:`_FoldTable`)."""

    __slots__ = ()

    def __missing__(self, key: int) -> str:
        ch = chr(key)
        folded = "." if ch == "。" else unicodedata.normalize("NFKC", ch)
        mapped = folded if len(folded) == 1 and folded.isascii() else ch
        if len(self) < _FOLD_CACHE_LIMIT:
            self[key] = mapped
        return mapped


_URL_VIEW_TABLE: Final = _UrlViewTable()


def _url_view(text: str) -> str:
    """``text`` with full-width forms and ``。`` as ASCII, same length, for the URL pattern.

    ``ｗｗｗ．ｅｘａｍｐｌｅ．ｃｏｍ`` and ``example。com`` are common ways round a naive filter.
    """
    return text if text.isascii() else text.translate(_URL_VIEW_TABLE)


def _urls(text: str) -> Iterable[re.Match[str]]:
    """The :data:`_URL` matches in the ASCII view of ``text``; spans are those of ``text``.

    Two cheap necessary conditions come first, so a message without a link costs one or two
    fast scans rather than the full pattern at every position.
    """
    if not _URL_HINT.search(text):
        return ()
    view = _url_view(text)
    if not _URL_VIEW_HINT.search(view):
        return ()
    return _URL.finditer(view)


def _is_short_link(url: str) -> bool:
    host = re.sub(r"\A(?:[a-z]+://)?", "", url.lower()).split("/", 1)[0].split(":", 1)[0]
    host = host.removeprefix("www.")
    return host in _SHORT_LINK_HOSTS


def _mask(text: str, spans: Iterable[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        chars[start:end] = _VARIABLE_MASK * (end - start)
    return "".join(chars)
