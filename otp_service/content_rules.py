"""Load the content rules — the shipped TOML plus an optional operator file — into a policy.

This is the I/O edge of the content check: it reads ``content_rules.toml`` from the package
(``importlib.resources``, so it works from a wheel or a zip), reads the operator's file named by
``OTP_CONTENT_RULES``, validates both against the schema documented at the top of the shipped
file and in ``docs/content-rules.md``, merges them, and compiles the pure
:class:`~otp_service.core.content.ContentPolicy`. Compiling builds an Aho–Corasick automaton,
so policies are cached per rules version (a hash of the files' bytes): a service, the CLI and
every test that use the same rules share one compiled matcher.

Every problem raises :class:`~otp_service.errors.ConfigurationError` naming the file and the
offending key, at start-up rather than at the first send.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import logging
import threading
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otp_service.core.content import (
    STRUCTURAL_CHECKS,
    Action,
    ContentPolicy,
    KeywordRule,
    RuleSet,
    Severity,
    StructuralRule,
    default_severity,
)
from otp_service.errors import ConfigurationError

if TYPE_CHECKING:
    from otp_service.settings import Settings

__all__ = [
    "RULES_ENV",
    "SCHEMA_VERSION",
    "build_policy",
    "content_policy_from_settings",
    "load_policy",
    "load_rules",
    "parse_rules",
    "shipped_rules_text",
    "traditional_to_simplified",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RULES_ENV = "OTP_CONTENT_RULES"
_SHIPPED = "content_rules.toml"
#: Compiled policies kept at once; a process normally needs one, tests a handful.
_CACHE_SIZE = 8

_TOP_KEYS = frozenset({"schema", "version", "allow", "structure", "group", "disable", "extend"})
_GROUP_KEYS = frozenset({"title", "source", "rules"})
_RULE_KEYS = frozenset({"id", "row", "action", "severity", "description", "keywords", "allow"})
_STRUCTURE_KEYS = frozenset({"row", "action", "severity", "description", "limit"})
_EXTEND_KEYS = frozenset({"keywords", "allow"})


@functools.cache
def shipped_rules_text() -> str:
    """The rules file shipped inside the package (read once: it cannot change under us)."""
    return importlib.resources.files("otp_service").joinpath(_SHIPPED).read_text("utf-8")


def load_rules(path: str | PathLike[str] | None = None) -> RuleSet:
    """The shipped rules, merged with the operator file at ``path`` if one is given.

    :raises ConfigurationError: the operator file is missing, unreadable, not TOML, or breaks
        the schema; the message names ``OTP_CONTENT_RULES`` and the key.
    """
    operator: str | None = None
    source = f"{RULES_ENV} ({path})"
    if path is not None:
        try:
            operator = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{source}: cannot read the rules file: {exc}") from None
    return parse_rules(shipped_rules_text(), operator, operator_source=source)


def parse_rules(
    shipped: str, operator: str | None = None, *, operator_source: str = RULES_ENV
) -> RuleSet:
    """Validate and merge rules documents given as TOML text (the pure half of loading).

    Memoised on the texts: every ``OtpService`` built from the same files (tests build
    hundreds) reuses one parse instead of ~20 ms of TOML and validation each.
    """
    return _parse_rules_cached(shipped, operator, operator_source)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _parse_rules_cached(shipped: str, operator: str | None, operator_source: str) -> RuleSet:
    base = _parse_document(shipped, f"shipped {_SHIPPED}", operator=False)
    digest = hashlib.sha256(shipped.encode())
    if operator is not None:
        extra = _parse_document(operator, operator_source, operator=True)
        base = _merge(base, extra, operator_source)
        digest.update(b"\x00" + operator.encode())
    version = f"{base.label}+{digest.hexdigest()[:12]}"
    return RuleSet(
        version=version,
        keyword_rules=tuple(base.rules.values()),
        structural_rules=tuple(base.structure.values()),
        allow=tuple(base.allow),
    )


def traditional_to_simplified() -> Callable[[str], str] | None:
    """OpenCC's ``t2s`` conversion as a plain callable, or None when OpenCC is unavailable.

    OpenCC reads its dictionaries from disk when constructed, which is why the converter is
    built here and handed to the pure core. The policy calls it once per distinct character and
    memoises the result, so the lock costs nothing on the hot path.
    """
    return _converter()


def build_policy(rules: RuleSet) -> ContentPolicy:
    """Compile ``rules`` (cached per ``rules.version``)."""
    with _cache_lock:
        policy = _policy_cache.get(rules.version)
        if policy is not None:
            return policy
    try:
        policy = ContentPolicy.from_rules(rules, to_simplified=traditional_to_simplified())
    except ValueError as exc:
        raise ConfigurationError(f"{RULES_ENV}: {exc}") from None
    with _cache_lock:
        if len(_policy_cache) >= _CACHE_SIZE:
            _policy_cache.pop(next(iter(_policy_cache)))
        return _policy_cache.setdefault(rules.version, policy)


def load_policy(path: str | PathLike[str] | None = None) -> ContentPolicy:
    """:func:`load_rules` then :func:`build_policy`: the shipped rules plus ``path``."""
    return build_policy(load_rules(path))


def content_policy_from_settings(settings: Settings) -> ContentPolicy:
    """The policy for ``settings.content_rules`` (``OTP_CONTENT_RULES``), compiled once."""
    return load_policy(settings.content_rules)


# --- internals -----------------------------------------------------------------------------

_policy_cache: dict[str, ContentPolicy] = {}
_cache_lock = threading.Lock()
_converter_lock = threading.Lock()
_converter_state: dict[str, Callable[[str], str] | None] = {}


def _converter() -> Callable[[str], str] | None:
    with _converter_lock:
        if "t2s" in _converter_state:
            return _converter_state["t2s"]
        try:
            import opencc
        except ImportError:  # pragma: no cover - opencc is a declared dependency
            log.warning("opencc is not installed: traditional Chinese is not folded to simplified")
            _converter_state["t2s"] = None
            return None
        engine = opencc.OpenCC("t2s")
        lock = threading.Lock()

        def to_simplified(text: str) -> str:
            with lock:
                return str(engine.convert(text))

        _converter_state["t2s"] = to_simplified
        return to_simplified


@dataclass
class _Document:
    label: str
    structure: dict[str, StructuralRule] = field(default_factory=dict)
    rules: dict[str, KeywordRule] = field(default_factory=dict)
    allow: list[str] = field(default_factory=list)
    #: Only operator files: raw ``[structure.x]`` tables (merged field by field), extensions
    #: and disabled ids.
    structure_patches: dict[str, dict[str, Any]] = field(default_factory=dict)
    extend: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    disable: list[str] = field(default_factory=list)


def _parse_document(text: str, source: str, *, operator: bool) -> _Document:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source}: not valid TOML: {exc}") from None
    _only_keys(data, _TOP_KEYS, source)
    if data.get("schema") != SCHEMA_VERSION:
        raise ConfigurationError(f"{source}: schema must be {SCHEMA_VERSION}")
    if not operator and ("disable" in data or "extend" in data):
        raise ConfigurationError(f"{source}: disable/extend belong in an operator file")
    doc = _Document(label=_text(data, "version", source, default="custom"))
    doc.allow = list(_strings(data, "allow", source))

    for check, table in _table(data, "structure", source).items():
        where = f"{source}: [structure.{check}]"
        if check not in STRUCTURAL_CHECKS:
            known = ", ".join(sorted(STRUCTURAL_CHECKS))
            raise ConfigurationError(f"{where}: unknown check (known: {known})")
        table = _as_table(table, where)
        _only_keys(table, _STRUCTURE_KEYS, where)
        if operator:
            doc.structure_patches[check] = dict(table)
        else:
            doc.structure[check] = _structural_rule(check, table, where)

    for group, group_table in _table(data, "group", source).items():
        where = f"{source}: [group.{group}]"
        group_table = _as_table(group_table, where)
        _only_keys(group_table, _GROUP_KEYS, where)
        rules = group_table.get("rules", [])
        if not isinstance(rules, list) or not rules:
            raise ConfigurationError(f"{where}: needs at least one [[group.{group}.rules]]")
        for index, rule_table in enumerate(rules):
            rule_where = f"{where} rule {index + 1}"
            rule = _keyword_rule(group, _as_table(rule_table, rule_where), rule_where)
            if rule.id in doc.rules:
                raise ConfigurationError(f"{source}: rule id {rule.id!r} is defined twice")
            doc.rules[rule.id] = rule

    for rule_id, table in _table(data, "extend", source).items():
        where = f"{source}: [extend.{rule_id!r}]"
        table = _as_table(table, where)
        _only_keys(table, _EXTEND_KEYS, where)
        doc.extend[rule_id] = (_strings(table, "keywords", where), _strings(table, "allow", where))
    doc.disable = list(_strings(data, "disable", source))
    return doc


def _merge(base: _Document, extra: _Document, source: str) -> _Document:
    rules = dict(base.rules)
    rules.update(extra.rules)  # same id: the operator's definition replaces the shipped one
    structure = dict(base.structure)
    for check, patch in extra.structure_patches.items():
        where = f"{source}: [structure.{check}]"
        current = structure.get(check)
        if current is None:
            structure[check] = _structural_rule(check, patch, where)
            continue
        merged: dict[str, Any] = {
            "row": current.row,
            "action": current.action.value,
            "description": current.description,
            "limit": current.limit,
        }
        if "row" not in patch:  # keep an explicit severity unless the row changes
            merged["severity"] = current.severity.value
        merged.update(patch)
        structure[check] = _structural_rule(check, merged, where)
    for rule_id, (keywords, allow) in extra.extend.items():
        rule = rules.get(rule_id)
        if rule is None:
            raise ConfigurationError(f"{source}: [extend] names unknown rule {rule_id!r}")
        rules[rule_id] = replace(rule, keywords=rule.keywords + keywords, allow=rule.allow + allow)
    for rule_id in extra.disable:
        if rule_id in rules:
            del rules[rule_id]
        elif rule_id.startswith("structure.") and rule_id.removeprefix("structure.") in structure:
            del structure[rule_id.removeprefix("structure.")]
        else:
            raise ConfigurationError(f"{source}: disable names unknown rule {rule_id!r}")
    label = base.label if extra.label == "custom" else f"{base.label}/{extra.label}"
    return _Document(label=label, structure=structure, rules=rules, allow=base.allow + extra.allow)


def _keyword_rule(group: str, table: Mapping[str, Any], where: str) -> KeywordRule:
    _only_keys(table, _RULE_KEYS, where)
    rule_id = _text(table, "id", where)
    if not rule_id.startswith(f"{group}.") or rule_id == f"{group}.":
        raise ConfigurationError(f"{where}: id must look like '{group}.<name>', got {rule_id!r}")
    where = f"{where} ({rule_id})"
    row, action, severity = _row_action_severity(table, where)
    keywords = _strings(table, "keywords", where)
    if not keywords:
        raise ConfigurationError(f"{where}: keywords must list at least one keyword")
    return KeywordRule(
        id=rule_id,
        group=group,
        row=row,
        severity=severity,
        action=action,
        keywords=keywords,
        allow=_strings(table, "allow", where),
        description=_text(table, "description", where, default=""),
    )


def _structural_rule(check: str, table: Mapping[str, Any], where: str) -> StructuralRule:
    row, action, severity = _row_action_severity(table, where)
    limit = table.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ConfigurationError(f"{where}: limit must be a positive whole number")
    return StructuralRule(
        check=check,
        row=row,
        severity=severity,
        action=action,
        description=_text(table, "description", where, default=""),
        limit=limit,
    )


def _row_action_severity(table: Mapping[str, Any], where: str) -> tuple[int, Action, Severity]:
    row = table.get("row")
    if not isinstance(row, int) or isinstance(row, bool) or not 1 <= row <= 9:
        raise ConfigurationError(f"{where}: row must be a violation row 1-9, got {row!r}")
    try:
        action = Action(table.get("action"))
    except ValueError:
        raise ConfigurationError(
            f"{where}: action must be 'block' or 'flag', got {table.get('action')!r}"
        ) from None
    raw_severity = table.get("severity")
    if raw_severity is None:
        return row, action, default_severity(row)
    try:
        return row, action, Severity(raw_severity)
    except ValueError:
        raise ConfigurationError(
            f"{where}: severity must be minor, serious or critical, got {raw_severity!r}"
        ) from None


def _only_keys(table: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigurationError(f"{where}: unknown keys {', '.join(unknown)}")


def _table(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    return _as_table(value, f"{where}: [{key}]")


def _as_table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where}: expected a table")
    return value


def _strings(table: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigurationError(f"{where}: {key} must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _text(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise ConfigurationError(f"{where}: {key} must be a non-empty string")
    return value.strip()
