"""The ``otp-service`` command: run the service and operate it."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from otp_service.errors import ConfigurationError, OtpError, StoreUnavailable
from otp_service.settings import Settings

if TYPE_CHECKING:
    from otp_service.service import OtpService
    from otp_service.sms.huawei_manage import HuaweiManagement

_T = TypeVar("_T")


def _settings_or_exit(also: Sequence[str] = ()) -> Settings:
    """The settings, or exit 2 listing every problem (``also``: the caller's own, found first)."""
    try:
        return Settings.from_env()
    except ConfigurationError as exc:
        _refuse([*also, *exc.problems])


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """SMS verification codes with anti-abuse built in."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--workers",
    default=0,
    type=click.IntRange(min=0),
    help="Run under gunicorn with this many workers (0: Flask's development server).",
)
def serve(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API, configured by OTP_* variables."""
    server_problems = _production_server_problems(os.environ.get("OTP_ENV", ""), workers)
    settings = _settings_or_exit(also=server_problems)
    _exit_on_problems(server_problems)
    if workers == 0:
        from otp_service.app import create_app
        from otp_service.log_redaction import RedactTokens

        # Werkzeug's request lines show the full URL, callback tokens included.
        logging.getLogger("werkzeug").addFilter(RedactTokens())
        create_app(settings).run(host=host, port=port)
        return
    # Refused here, before gunicorn starts, with the same reasons its config module gives.
    _exit_on_problems(_gateway_problems(settings) + _worker_problems(settings, workers))
    _run_gunicorn(f"{host}:{port}", workers)


def _run_gunicorn(bind: str, workers: int) -> None:
    from gunicorn.app.wsgiapp import WSGIApplication

    # Same config module as the Docker image: JSON logs, graceful timeout, metrics directory.
    sys.argv = [
        "gunicorn",
        "--config",
        "python:otp_service.gunicorn_conf",
        "--bind",
        bind,
        "--workers",
        str(workers),
        "otp_service.app:create_app()",
    ]
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").run()


@main.command("check-config")
def check_config() -> None:
    """Validate the OTP_* environment as the service's start would, and print every setting
    (secrets hidden).

    Every problem is listed at once. The settings' own checks, the SMS gateway's and, in
    production, what the gunicorn sidecar would refuse with OTP_WORKERS workers fail it; outside
    production the sidecar's refusals and unsafe choices the environment accepts are warnings.
    """
    settings = _settings_or_exit()
    problems = _gateway_problems(settings)
    sidecar = _worker_problems(settings, settings.workers)
    warnings = settings.warnings()
    if settings.env == "production":
        problems += sidecar  # production runs the sidecar: what it would refuse is an error now
    else:
        warnings += [f"the sidecar (gunicorn) would refuse this: {p}" for p in sidecar]
    _exit_on_problems(problems)
    warnings += _persistence_warnings(settings)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    for name, value in settings.describe().items():
        click.echo(f"{name}={value}")
    noun = "warning" if len(warnings) == 1 else "warnings"
    click.echo(f"configuration ok{f' ({len(warnings)} {noun})' if warnings else ''}", err=True)


def _persistence_warnings(settings: Settings) -> list[str]:
    """In production, whether the configured Redis keeps what must survive its restart.

    A warning, not an error: the server may persist in a way ``CONFIG`` does not show (a managed
    service, replicas), and an unreachable store may just not be up yet.
    """
    if settings.env != "production" or settings.redis_url is None:
        return []
    from otp_service.store import store_from_url
    from otp_service.store.base import PersistenceReport

    unreachable = ["OTP_REDIS_URL: unreachable, so its persistence was not checked"]
    try:
        store = store_from_url(settings.redis_url)
    except StoreUnavailable:
        return unreachable
    try:
        warning = store.persistence_warning() if isinstance(store, PersistenceReport) else None
    except StoreUnavailable:
        return unreachable
    finally:
        store.close()
    return [] if warning is None else [f"OTP_REDIS_URL: {warning}"]


def _production_server_problems(env: str, workers: int) -> list[str]:
    """Why ``serve`` must not run with ``workers`` (0: Flask's server) in OTP_ENV ``env``.

    Judged on the raw variable, so it is reported together with any problem of the settings.
    """
    if env.strip() == "production" and workers == 0:
        return [
            "OTP_ENV: production refuses Flask's development server (single-threaded, no "
            "graceful shutdown); run `otp-service serve --workers N` or the image's gunicorn"
        ]
    return []


def _gateway_problems(settings: Settings) -> list[str]:
    """What the SMS gateway refuses at start (e.g. a code too long for a Huawei template)."""
    from otp_service.sms import gateway_from_settings

    try:
        gateway = gateway_from_settings(settings)
    except ConfigurationError as exc:
        return [exc.detail]
    close = getattr(gateway, "close", None)
    if close is not None:
        close()
    return []


def _worker_problems(settings: Settings, workers: int) -> list[str]:
    """What gunicorn's config module refuses for ``workers`` workers (shared key, store …)."""
    from otp_service.gunicorn_conf import startup_problems

    return startup_problems(dataclasses.replace(settings, workers=workers), os.environ)


def _shared_state_settings(*, numbers: bool = False) -> Settings:
    """The settings of a command that reads or changes the service's shared state, or exit 2.

    Without OTP_REDIS_URL the store would be this process's own memory: the command would report
    on, or change, state the service never sees, and still print success. A command that finds a
    number's state (``numbers``) also needs the service's OTP_SECRET_KEY: numbers are stored
    under a keyed hash, and a random key finds nothing and writes entries the service never
    matches.
    """
    url = os.environ.get("OTP_REDIS_URL", "").strip()
    problems = []
    if not url or url.startswith("memory:"):
        problems.append(
            "OTP_REDIS_URL: this command reads and changes the service's shared store; set it "
            "to the service's Redis (without it the command would work on an empty in-memory "
            "store of its own)"
        )
    if numbers and not os.environ.get("OTP_SECRET_KEY", "").strip():
        problems.append(
            "OTP_SECRET_KEY: numbers are stored under a hash keyed by the service's secret; set "
            "the service's OTP_SECRET_KEY (a random key would find nothing and write entries the "
            "service never matches)"
        )
        _refuse(problems)  # building the settings would only make, and announce, a random key
    settings = _settings_or_exit(also=problems)
    _exit_on_problems(problems)
    return settings


@dataclasses.dataclass(frozen=True, slots=True)
class _Keyring:
    """One configured secret as the commands name it: where it is set and its key id."""

    where: str
    key_id: str
    #: The settings with this secret as the current key, to look state up under it.
    settings: Settings

    @property
    def current(self) -> bool:
        return self.where == "OTP_SECRET_KEY"

    def named(self) -> str:
        return f"key id {self.key_id}, {self.where}"


def _keyrings(settings: Settings) -> list[_Keyring]:
    """The current key, then each fallback: where a number's state may have been written.

    Each ring's settings hold its one key and no fallbacks, so a lookup through it finds only
    what that key wrote and the command can say which key held the state.
    """
    from otp_service.core.codes import key_id

    assert settings.secret_key is not None  # noqa: S101 - checked by _shared_state_settings
    current = dataclasses.replace(settings, secret_key_fallbacks=())
    rings = [_Keyring("OTP_SECRET_KEY", key_id(settings.secret_key), current)]
    for index, fallback in enumerate(settings.secret_key_fallbacks, start=1):
        under = dataclasses.replace(settings, secret_key=fallback, secret_key_fallbacks=())
        where = f"OTP_SECRET_KEY_FALLBACKS entry {index}"
        rings.append(_Keyring(where, key_id(fallback), under))
    return rings


def _exit_on_problems(problems: Sequence[str]) -> None:
    if problems:
        _refuse(problems)


def _refuse(problems: Sequence[str]) -> NoReturn:
    """Print every problem, one a line, and exit 2."""
    for problem in problems:
        click.echo(f"configuration error: {problem}", err=True)
    sys.exit(2)


@main.group()
def optout() -> None:
    """Numbers that replied STOP (TD, 退订 …) and are suppressed."""


@optout.command("show")
@click.argument("phone")
def optout_show(phone: str) -> None:
    """Say whether PHONE is opted out, since when and why, and under which key id."""
    from otp_service.callbacks import optout_status
    from otp_service.service import OtpService

    service = OtpService(_shared_state_settings(numbers=True))
    rings = _keyrings(service.settings)
    now = service.clock.now()
    with _optout_errors():
        found = (
            (ring, optout_status(ring.settings, service.store, phone, now=now)) for ring in rings
        )
        ring, record = next(((r, rec) for r, rec in found if rec is not None), (None, None))
    if ring is None:
        click.echo("not opted out")
    elif ring.current:
        click.echo(f"opted out: {record} (under {ring.named()})")
    else:
        click.echo(
            f"opted out under an old key only: {record} (under {ring.named()}); the service "
            f"matches numbers under key id {rings[0].key_id} (OTP_SECRET_KEY) and no longer "
            "sees this opt-out"
        )


@optout.command("clear")
@click.argument("phone")
def optout_clear(phone: str) -> None:
    """Lift the opt-out of PHONE (after the subscriber asked to receive messages again).

    It is lifted under the current key and every fallback key.
    """
    from otp_service.callbacks import clear_optout
    from otp_service.service import OtpService

    service = OtpService(_shared_state_settings(numbers=True))
    with _optout_errors():
        cleared = [
            ring
            for ring in _keyrings(service.settings)
            if clear_optout(ring.settings, service.store, phone)
        ]
    if not cleared:
        click.echo("no opt-out was recorded")
    elif cleared[0].current:
        click.echo("opt-out cleared")
    else:
        click.echo(f"opt-out cleared (it was under {', '.join(r.named() for r in cleared)})")


@contextlib.contextmanager
def _optout_errors() -> Iterator[None]:
    """A malformed number: its message and exit 2, as the other operator commands."""
    try:
        yield
    except OtpError as exc:
        click.echo(exc.detail, err=True)
        sys.exit(2)


@main.group()
def abuse() -> None:
    """Pumping defence: blocked scopes, allow-list, budget (docs/pumping.md)."""


def _abuse_service(*, numbers: bool = False) -> OtpService:
    from otp_service.service import OtpService

    return OtpService(_shared_state_settings(numbers=numbers))


@abuse.command("blocks")
def abuse_blocks() -> None:
    """List blocked scopes with the rule and the figures that tripped them."""
    service = _abuse_service()
    now = service.clock.now()
    blocks = service.pumping.blocks(now)
    if not blocks:
        click.echo("no scope is blocked")
    for block in blocks:
        record = block.record
        left = max(0, int(float(str(record.get("until", now))) - now))
        # A range is shown masked, followed by the id `abuse lift` takes.
        name = block.value if block.shown == block.value else f"{block.shown} ({block.value})"
        click.echo(
            f"{block.kind} {name}: {record.get('rule')} — sent {record.get('sent')}, "
            f"verified {record.get('verified')}, allowance {record.get('allowance')}, "
            f"strike {record.get('strikes')}, {left} s left"
        )


@abuse.command("lift")
@click.argument("kind", type=click.Choice(["prefix", "country", "subnet"]))
@click.argument("value")
def abuse_lift(kind: str, value: str) -> None:
    """Lift the block of a scope (as `abuse blocks` shows it: a range by its id, or in clear as
    E.164 without its last four digits), and forget its strikes."""
    lifted = _abuse_service().pumping.lift(kind, value)
    click.echo("block lifted" if lifted else "no such block")


@abuse.command("allow")
@click.argument("kind", type=click.Choice(["number", "subnet"]))
@click.argument("value")
@click.option("--days", default=90, show_default=True, type=click.IntRange(1, 3650))
def abuse_allow(kind: str, value: str, days: int) -> None:
    """Exempt a number (any format) or a subnet (CIDR or an address) from the pumping rules."""
    service = _abuse_service(numbers=kind == "number")
    if kind == "number":
        value = _e164_or_exit(service, value)
    try:
        service.pumping.allow(kind, value, now=service.clock.now(), ttl=days * 86400)
    except OtpError as exc:
        click.echo(exc.detail, err=True)
        sys.exit(2)
    click.echo(f"allow-listed for {days} days")


@abuse.command("disallow")
@click.argument("kind", type=click.Choice(["number", "subnet"]))
@click.argument("value")
def abuse_disallow(kind: str, value: str) -> None:
    """Remove an allow-list entry (a number's under the current key and every fallback key)."""
    from otp_service.pumping import PumpingDefence

    service = _abuse_service(numbers=kind == "number")
    rings = _keyrings(service.settings)
    if kind == "number":
        value = _e164_or_exit(service, value)
    else:
        rings = rings[:1]  # a subnet is stored as itself, under no key
    try:
        removed = [
            ring
            for ring in rings
            if PumpingDefence(service.store, service.keys, ring.settings).disallow(kind, value)
        ]
    except OtpError as exc:
        click.echo(exc.detail, err=True)
        sys.exit(2)
    if not removed:
        click.echo("was not allow-listed")
    elif removed[0].current:
        click.echo("removed")
    else:
        click.echo(f"removed (it was under {', '.join(r.named() for r in removed)})")


@abuse.command("budget")
def abuse_budget() -> None:
    """Show today's and this month's spend against the ceilings."""
    service = _abuse_service()
    spent = service.budget.spent(service.clock.now())
    for period, ceiling in service.budget.ceilings.items():
        limit = f"{ceiling:g}" if ceiling else "no ceiling"
        click.echo(f"{period}: {spent[period]:g} of {limit}")


def _e164_or_exit(service: OtpService, raw: str) -> str:
    from otp_service.core.phone import parse_phone

    try:
        phone = parse_phone(
            raw, default_region=service.settings.default_region, allowed_regions=("*",)
        )
    except OtpError as exc:
        click.echo(exc.detail, err=True)
        sys.exit(2)
    return phone.e164


@main.group()
def limits() -> None:
    """Throttling windows of a number or a client address (docs/limits.md).

    They live in the shared store: point OTP_REDIS_URL at the service's Redis.
    """


def _limit_subject(command: Callable[..., None]) -> Callable[..., None]:
    """The options naming whose windows a ``limits`` command is about."""
    options = [
        click.option("--phone", help="A number (its windows for --purpose, and its range's)."),
        click.option("--purpose", help="The purpose of the number's windows (default: default)."),
        click.option("--region", help="Region for a number written without +."),
        click.option("--ip", help="A client address (its windows, its subnet's, verify's)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _limits_call(call: Callable[[], _T]) -> _T:
    try:
        return call()
    except OtpError as exc:
        click.echo(exc.detail, err=True)
        sys.exit(2 if exc.status < 500 else 1)


_WINDOW_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


def _window_text(seconds: int) -> str:
    return _WINDOW_NAMES.get(seconds, f"{seconds}s")


@limits.command("show")
@_limit_subject
def limits_show(phone: str | None, purpose: str | None, region: str | None, ip: str | None) -> None:
    """Print each window's use, limit and when it frees up (numbers masked)."""
    from otp_service.service import OtpService

    service = OtpService(_shared_state_settings(numbers=phone is not None))
    report = _limits_call(
        lambda: service.limit_status(phone=phone, purpose=purpose, region=region, ip=ip)
    )
    now = service.clock.now()
    if report.phone is not None:
        ring = _keyrings(service.settings)[0]
        click.echo(f"number {report.phone} (purpose {report.purpose}) under {ring.named()}")
    if report.ip is not None:
        click.echo(f"address {report.ip}")
    for usage in report.windows:
        rule = usage.rule
        spec = f"{rule.amount}/{_window_text(rule.window)}"
        line = f"{rule.name:<10} {spec:<12} used {usage.used}"
        if usage.retry_after > 0:
            wait = math.ceil(usage.retry_after)
            line += f"  FULL until {_utc(now + usage.retry_after)} ({wait} s)"
        elif usage.used:
            line += f"  next frees {_utc(now + usage.reset_after)}"
        click.echo(line + ("  [shadow]" if rule.shadow else ""))


@limits.command("reset")
@_limit_subject
def limits_reset(
    phone: str | None, purpose: str | None, region: str | None, ip: str | None
) -> None:
    """Clear the windows `limits show` lists, except the global budget."""
    from otp_service.service import OtpService

    service = OtpService(_shared_state_settings(numbers=phone is not None))
    cleared = _limits_call(
        lambda: service.reset_limits(phone=phone, purpose=purpose, region=region, ip=ip)
    )
    click.echo(f"cleared {cleared} window{'s' if cleared != 1 else ''}")


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: Exit codes of ``content check`` and ``content lint-template`` (docs/content-rules.md).
CONTENT_EXIT_CLEAN = 0
CONTENT_EXIT_FLAGS = 1
CONTENT_EXIT_BLOCKED = 2
CONTENT_EXIT_USAGE = 64  # EX_USAGE: a bad argument or an unreadable template file
CONTENT_EXIT_CONFIG = 78  # EX_CONFIG: invalid OTP_* settings or rules file

_CONTENT_EXIT_HELP = (
    "\b\nExit codes: 0 clean, 1 flags only, 2 at least one block,\n"
    "64 usage error, 78 configuration error (settings or rules file)."
)


class _ContentGroup(click.Group):
    """Usage errors exit 64, not click's 2: 2 already means "blocked" for these commands."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            # click 8.5 made ``exit_code`` a class variable: show the error, then exit ourselves.
            exc.show()
            ctx.exit(CONTENT_EXIT_USAGE)


@main.group(cls=_ContentGroup, epilog=_CONTENT_EXIT_HELP)
def content() -> None:
    """Check messages and templates against the content rules (docs/content-rules.md).

    The rules are the shipped ones plus OTP_CONTENT_RULES; the expected signature is
    OTP_HUAWEI_SIGNATURE unless --signature is given.
    """


def _content_setup(signature: str | None, rules: str | None) -> tuple[Any, str | None]:
    """The policy and expected signature, from the options or their two settings only.

    Judging text needs no secret, store or gateway, so none is built (nor the whole settings,
    whose random development key would be announced as missing).
    """
    from otp_service.content_rules import load_policy
    from otp_service.settings import env_setting

    try:
        policy = load_policy(rules if rules is not None else env_setting("content_rules"))
        expected = signature if signature is not None else env_setting("huawei_signature")
    except ConfigurationError as exc:
        click.echo(f"configuration error: {exc.detail}", err=True)
        sys.exit(CONTENT_EXIT_CONFIG)
    return policy, expected


def _finding_json(finding: Any) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "group": finding.group,
        "row": finding.row,
        "severity": finding.severity.value,
        "action": finding.action.value,
        "target": finding.target,
        "start": finding.start,
        "end": finding.end,
    }


def _report_json(report: Any) -> dict[str, Any]:
    """One report as ``--json`` prints it; ``--many`` prints a list of these, each with ``line``."""
    return {
        "rules_version": report.rules_version,
        "length": report.length,
        "segments": report.segments,
        "findings": [_finding_json(f) for f in report.findings],
    }


def _finding_lines(report: Any, sources: dict[str, str]) -> Iterator[str]:
    """One text line per finding: action, rule, row, severity, position, matched text."""
    for f in report.findings:
        # The operator's own text, so showing what matched is safe here (never in the API).
        matched = sources.get(f.target, "")[f.start : f.end]
        shown = f" {matched!r}" if matched else ""
        yield (
            f"{f.action.value.upper():<5} {f.rule:<28} row {f.row}  {f.severity.value:<8} "
            f"{f.target}[{f.start}:{f.end}]{shown}  {f.description}"
        )


def _content_exit_code(report: Any) -> int:
    if report.blocked:
        return CONTENT_EXIT_BLOCKED
    return CONTENT_EXIT_FLAGS if report.findings else CONTENT_EXIT_CLEAN


def _content_report(report: Any, sources: dict[str, str], as_json: bool) -> NoReturn:
    """Print every finding (rule, row, severity, position) and exit with the documented code."""
    import json

    if as_json:
        click.echo(json.dumps(_report_json(report), ensure_ascii=False))
    else:
        for line in _finding_lines(report, sources):
            click.echo(line)
        blocks, flags = len(report.blocking), len(report.flags)
        click.echo(
            f"blocks: {blocks}, flags: {flags}; length {report.length}, "
            f"segments {report.segments}; rules {report.rules_version}"
        )
    sys.exit(_content_exit_code(report))


@content.command("check", epilog=_CONTENT_EXIT_HELP)
@click.argument("text")
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    help="A template parameter, in order (the first is the code). Repeat for several. "
    "Without it the variable checks are skipped.",
)
@click.option("--signature", help="Expected signature (default: OTP_HUAWEI_SIGNATURE).")
@click.option("--rules", help="Operator rules file (default: OTP_CONTENT_RULES).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def content_check(
    text: str, params: tuple[str, ...], signature: str | None, rules: str | None, as_json: bool
) -> None:
    """Check TEXT, a rendered message, as the send pipeline does."""
    policy, expected = _content_setup(signature, rules)
    report = policy.check_message(text, list(params) if params else None, expected)
    sources = {"text": text} | {f"params[{i}]": p for i, p in enumerate(params)}
    _content_report(report, sources, as_json)


def _read_text_or_exit(path: str) -> str:
    """The whole of ``path`` (``-`` is stdin); an unreadable file is a usage error (exit 64)."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        click.echo(f"cannot read {path}: {exc}", err=True)
        sys.exit(CONTENT_EXIT_USAGE)


@content.command("lint-template", epilog=_CONTENT_EXIT_HELP)
@click.argument("template", required=False)
@click.option(
    "--many",
    "many",
    metavar="FILE",
    help="Lint every line of FILE ('-' for stdin) as one template; blank lines are skipped. "
    "Each finding names its line; the exit code is the worst template's.",
)
@click.option(
    "--signature", help="Signature counted in the length (default: OTP_HUAWEI_SIGNATURE)."
)
@click.option("--rules", help="Operator rules file (default: OTP_CONTENT_RULES).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def content_lint_template(
    template: str | None, many: str | None, signature: str | None, rules: str | None, as_json: bool
) -> None:
    """Lint TEMPLATE before filing it: a file path, '-' for stdin, or the template text.

    ${1}, ${NAME} and {code} are provider variables (a verification template has exactly one);
    other {name} fields are filled in by the service.
    """
    if many is not None:
        if template is not None:
            raise click.UsageError("give either TEMPLATE or --many FILE, not both")
        _lint_many(_read_text_or_exit(many), signature, rules, as_json)
    if template is None:
        raise click.UsageError("missing TEMPLATE (or --many FILE)")
    if template == "-" or os.path.isfile(template):
        text = _read_text_or_exit(template)
    else:
        text = template
    text = text.rstrip("\r\n")
    policy, expected = _content_setup(signature, rules)
    _content_report(policy.lint_template(text, signature=expected), {"template": text}, as_json)


def _lint_many(text: str, signature: str | None, rules: str | None, as_json: bool) -> NoReturn:
    """Lint each non-blank line of ``text`` with one policy; exit with the worst code.

    Line numbers are the file's (blank lines count), so an operator can jump to the line; only
    ``\\n`` ends a line, as in an editor, so a template may hold other Unicode separators.
    """
    import json

    policy, expected = _content_setup(signature, rules)
    results: list[tuple[int, str, Any]] = [
        (number, line, policy.lint_template(line, signature=expected))
        for number, raw in enumerate(text.split("\n"), start=1)
        if (line := raw.rstrip("\r")).strip()
    ]
    if as_json:
        click.echo(
            json.dumps(
                [{"line": number} | _report_json(report) for number, _, report in results],
                ensure_ascii=False,
            )
        )
    else:
        for number, line, report in results:
            for finding_line in _finding_lines(report, {"template": line}):
                click.echo(f"line {number}: {finding_line}")
        blocked = sum(1 for *_, report in results if report.blocked)
        flagged = sum(1 for *_, report in results if report.findings and not report.blocked)
        click.echo(
            f"templates: {len(results)}, blocked: {blocked}, flagged: {flagged}, "
            f"clean: {len(results) - blocked - flagged}; rules {policy.version}"
        )
    sys.exit(max((_content_exit_code(report) for *_, report in results), default=0))


@main.command("check-provider")
def check_provider() -> None:
    """Check the Huawei account with one harmless authenticated call to the send API, and read
    the template's and signature's state from the management API; print each finding with its
    cause and fix in words.

    The account check needs only the send-API settings (OTP_HUAWEI_ENDPOINT, _APP_KEY,
    _APP_SECRET, _SENDER, _TEMPLATE_ID); the state report needs the OTP_HUAWEI_IAM_* settings
    too. Each runs when its settings are there. The call cannot send an SMS: its number is
    deliberately invalid (docs/huawei.md, section 9).

    Exits 1 when something stops every send, 2 when nothing could be checked or an answer could
    not be read.
    """
    import time

    from otp_service.sms.huawei_manage import HuaweiManagement
    from otp_service.sms.huawei_probe import probe_problems

    settings = _settings_or_exit()
    missing = probe_problems(settings)
    management = HuaweiManagement.from_settings(settings, now=time.time)
    states = management is not None and bool(settings.huawei_template_id)
    if missing and not states:
        click.echo(
            f"check-provider needs the send-API settings (missing: {', '.join(missing)}) for the "
            "account check, or OTP_HUAWEI_TEMPLATE_ID and the management API settings "
            "OTP_HUAWEI_IAM_ENDPOINT, OTP_HUAWEI_IAM_DOMAIN, OTP_HUAWEI_IAM_USER, "
            "OTP_HUAWEI_IAM_PASSWORD and OTP_HUAWEI_PROJECT_ID for the template and signature "
            "state (docs/huawei.md, sections 7 and 9)",
            err=True,
        )
        sys.exit(2)
    results = []
    if missing:
        click.echo(f"account: not checked (set {', '.join(missing)})")
    else:
        results.append(_check_account(settings))
    if management is not None and states:
        results.append(_check_states(settings, management))
    else:
        click.echo("template and signature state: not read (no OTP_HUAWEI_IAM_* settings)")
    if 1 in results:
        sys.exit(1)
    if 2 in results:
        sys.exit(2)


def _check_account(settings: Settings) -> int:
    """The account check's lines; 0 healthy, 1 a fault that stops sending, 2 no verdict."""
    from otp_service.sms.huawei_probe import (
        ProbeFailed,
        address_words,
        clock_words,
        judge,
        probe_account,
    )

    try:
        answer = probe_account(settings)
    except ProbeFailed as exc:
        click.echo(f"account: not checked - {exc}", err=True)
        return 2
    finding = judge(answer)
    verdict = {"ok": "ok", "fault": "BLOCKS SENDING", "unknown": "UNKNOWN"}[finding.verdict]
    click.echo(f"account: {finding.state} [{verdict}] - {finding.cause}; fix: {finding.fix}")
    # Both facts, unless the finding already names them.
    if finding.state not in ("E000110", "E000001"):
        click.echo(f"clock: {clock_words(answer.clock_offset)}")
    if finding.state != "E000620":
        click.echo(f"calling from: {address_words(answer.local_address)}")
    return {"ok": 0, "fault": 1, "unknown": 2}[finding.verdict]


def _check_states(settings: Settings, management: HuaweiManagement) -> int:
    """The template and signature lines (issue 16.4); 0, 1 when one blocks, 2 unreadable."""
    from otp_service.sms.huawei_manage import ManagementError, assess

    assert settings.huawei_template_id is not None  # noqa: S101 - checked by the caller
    try:
        template = management.template(settings.huawei_template_id)
        signature = (
            management.signature(settings.huawei_signature) if settings.huawei_signature else None
        )
        variables = management.variables(template)
    except ManagementError as exc:
        click.echo(f"could not read the provider state: {exc}", err=True)
        return 2
    findings = assess(
        template,
        signature,
        signature_configured=bool(settings.huawei_signature),
        variables=variables,
        code_length=settings.code_length,
    )
    for finding in findings:
        verdict = "BLOCKS SENDING" if finding.blocking else "ok"
        click.echo(f"{finding.subject}: {finding.state} [{verdict}] - {finding.fix}")
    return 1 if any(finding.blocking for finding in findings) else 0


@main.command("notify")
@click.option("--template-id", required=True, help="Approved Huawei template to send.")
@click.option("--param", "params", multiple=True, help="A template parameter, in order.")
@click.option(
    "--numbers",
    "numbers_file",
    required=True,
    type=click.File(encoding="utf-8"),
    help="File with one phone number a line ('-' for stdin).",
)
@click.option("--signature", help="Signature for a universal template (domestic channel).")
@click.option(
    "--group-size",
    default=100,
    show_default=True,
    type=click.IntRange(1, 500),
    help="Numbers per batchSendDiffSms request.",
)
@click.option("--dry-run", is_flag=True, help="Send nothing; print what would be sent.")
@click.option(
    "--text",
    help="The filed template text with ${1}, ${2} … placeholders: rendered with the "
    "parameters and refused if the content rules block it.",
)
@click.option(
    "--ignore-optouts", is_flag=True, help="Proceed when the opt-out store cannot be checked."
)
def notify(
    template_id: str,
    params: tuple[str, ...],
    numbers_file: Any,
    signature: str | None,
    group_size: int,
    dry_run: bool,
    text: str | None,
    ignore_optouts: bool,
) -> None:
    """Send one template to a list of numbers through batchSendDiffSms, in groups.

    Only masked numbers are printed. Opted-out numbers are skipped when OTP_REDIS_URL and
    OTP_SECRET_KEY let the opt-out store be read; otherwise --ignore-optouts is required.
    """
    from otp_service.core.phone import mask_phone, parse_phone
    from otp_service.sms.huawei import HuaweiSmsGateway
    from otp_service.sms.huawei_diff import DiffBatch, send_diff, split_batch

    settings = _settings_or_exit()
    if text is not None:
        _notice_content_or_exit(settings, text, params, signature)
    try:
        gateway = HuaweiSmsGateway.from_settings(settings)
    except ConfigurationError as exc:
        _refuse([exc.detail or "Huawei settings are incomplete"])
    numbers: list[str] = []
    for line_no, line in enumerate(numbers_file, start=1):
        raw = line.strip()
        if not raw:
            continue
        try:
            phone = parse_phone(raw, default_region=settings.default_region, allowed_regions=("*",))
        except OtpError as exc:
            click.echo(f"line {line_no}: skipped, {exc.detail}", err=True)
            continue
        if phone.e164 not in numbers:
            numbers.append(phone.e164)
    skipped = _optouts(settings, numbers, ignore_optouts)
    numbers = [n for n in numbers if n not in skipped]
    batches = list(
        split_batch(gateway, DiffBatch(numbers, template_id, params, signature), group_size)
    )
    if dry_run:
        for index, group in enumerate(batches, start=1):
            shown = ", ".join(mask_phone(n) for n in group.numbers)
            click.echo(f"request {index}: template {template_id} params {list(params)}: {shown}")
        click.echo(f"dry run: {len(numbers)} numbers in {len(batches)} requests, nothing sent")
        gateway.close()
        return
    counts = {"sent": 0, "refused": 0, "unknown": 0}
    try:
        with click.progressbar(batches, label="sending", file=sys.stderr) as bar:
            for group in bar:
                for result in send_diff(gateway, group):
                    counts[result.outcome] += 1
                    if result.outcome != "sent":
                        click.echo(f"{result.masked}: {result.outcome} {result.code or ''}")
    finally:
        gateway.close()
    click.echo(
        f"sent {counts['sent']}, refused {counts['refused']}, unknown outcome "
        f"{counts['unknown']}, opted out {len(skipped)}"
    )


def _notice_content_or_exit(
    settings: Settings, text: str, params: Sequence[str], signature: str | None
) -> None:
    """Render ``text`` and exit 2 if the content rules block it (the send pipeline's check)."""
    import re

    from otp_service.content_rules import content_policy_from_settings

    def fill(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        return params[index] if 0 <= index < len(params) else match.group(0)

    rendered = re.sub(r"\$\{(\d+)\}", fill, text)
    expected = signature or settings.huawei_signature
    # The variable checks assume a verification code first: a notice is checked as text.
    report = content_policy_from_settings(settings).check_message(rendered, None, expected)
    click.echo(f"message: {rendered}")
    if report.blocked:
        _refuse([f"content blocked by {f.rule} ({f.description})" for f in report.blocking])


def _optouts(settings: Settings, numbers: Sequence[str], ignore: bool) -> set[str]:
    """Opted-out numbers among ``numbers``; refuse when the store cannot be read, unless told."""
    if not (os.environ.get("OTP_REDIS_URL") and os.environ.get("OTP_SECRET_KEY")):
        if not ignore:
            _refuse(
                [
                    "opt-outs could not be checked (OTP_REDIS_URL and OTP_SECRET_KEY are needed);"
                    " pass --ignore-optouts to send anyway"
                ]
            )
        click.echo("warning: opt-outs not checked", err=True)
        return set()
    from otp_service.callbacks import optout_status
    from otp_service.service import OtpService

    service = OtpService(settings)
    now = service.clock.now()
    return {n for n in numbers if optout_status(settings, service.store, n, now=now) is not None}


def run(args: list[str] | None = None) -> Any:
    """Entry point for ``python -m otp_service``."""
    return main.main(args=args, prog_name="otp-service")
