"""``OTP_AUDIT_LOG``: the audit trail is visible when ``create_app`` is embedded (issue 17.7).

Under a WSGI server other than the sidecar's gunicorn configuration nothing configures logging,
so INFO records on ``otp_service.audit`` reached no handler and every decision was invisible.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otp_service import ConsoleGateway, create_app
from otp_service.audit import attach_audit_log
from otp_service.errors import ConfigurationError
from otp_service.settings import Settings
from otp_service.store import MemoryStore
from tests.conftest import TEST_SECRET
from tests.processes import child_environ, stop_and_read
from tests.redis_server import free_port

PHONE = "+8613812345678"
AUDIT = logging.getLogger("otp_service.audit")


@pytest.fixture(autouse=True)
def _no_audit_handler_left() -> Iterator[None]:
    """Whatever a test attached is gone afterwards, so other tests' logging is untouched."""
    level = AUDIT.level
    yield
    attach_audit_log("off")
    AUDIT.setLevel(level)


def _ours() -> list[logging.Handler]:
    return [h for h in AUDIT.handlers if type(h).__name__.startswith("_Audit")]


def _send(settings: Settings) -> None:
    app = create_app(settings, store=MemoryStore(), gateway=ConsoleGateway())
    answer = app.test_client().post("/send-code", json={"phone": PHONE})
    assert answer.status_code == 202


def test_a_file_destination_gets_each_decision_as_json_with_the_number_masked(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "audit.log"
    _send(settings_factory(audit_log=str(path)))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    sends = [line for line in lines if line.get("event") == "send"]
    assert len(sends) == 1
    assert sends[0]["outcome"] == "accepted"
    assert sends[0]["logger"] == "otp_service.audit"
    assert sends[0]["phone"] == "+86138****5678"
    assert PHONE not in path.read_text()


def test_off_attaches_nothing(settings_factory: Callable[..., Settings]) -> None:
    _send(settings_factory(audit_log="off"))
    assert _ours() == []


def test_building_the_app_twice_keeps_one_handler(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "audit.log"
    _send(settings_factory(audit_log=str(path)))
    _send(settings_factory(audit_log=str(path)))
    assert len(_ours()) == 1
    sends = [line for line in path.read_text().splitlines() if '"event": "send"' in line]
    assert len(sends) == 2


@pytest.mark.parametrize("value", ["/no/such/directory/audit.log", "{tmp}"])
def test_an_unusable_destination_is_a_settings_error(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="OTP_AUDIT_LOG"):
        Settings.from_env({"OTP_AUDIT_LOG": value.format(tmp=tmp_path)})


def test_empty_is_off_and_a_home_path_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Settings.from_env({"OTP_AUDIT_LOG": ""}).audit_log == "off"
    settings = Settings.from_env({"OTP_AUDIT_LOG": "~/audit.log"})
    assert settings.audit_log == str(tmp_path / "audit.log")
    attach_audit_log(settings.audit_log)
    AUDIT.info("probe")
    assert (tmp_path / "audit.log").exists()


def test_a_directory_is_refused_as_a_destination(tmp_path: Path) -> None:
    """It would pass a "directory exists" check and then fail to open in ``create_app``."""
    with pytest.raises(ConfigurationError, match="^OTP_AUDIT_LOG: .*is a directory"):
        Settings.from_env({"OTP_AUDIT_LOG": str(tmp_path)})


def test_a_home_relative_path_is_written_where_it_was_checked(
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``~`` is expanded once, when read, so the check and the handler see the same file."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # an unexpanded "~/audit.log" would be looked for under ./~
    settings = Settings.from_env({"OTP_AUDIT_LOG": "~/audit.log"})
    assert settings.audit_log == str(tmp_path / "audit.log")
    _send(settings_factory(audit_log=settings.audit_log))
    assert '"event": "send"' in (tmp_path / "audit.log").read_text()


def test_a_destination_gone_since_the_settings_were_read_names_the_variable(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    settings = settings_factory(audit_log=str(directory / "audit.log"))
    directory.rmdir()
    before = attach_audit_log("stderr")
    with pytest.raises(ConfigurationError, match="^OTP_AUDIT_LOG: cannot open"):
        create_app(settings, store=MemoryStore(), gateway=ConsoleGateway())
    assert _ours() == [before], "a failed open must leave the earlier destination in place"


def test_stderr_under_another_wsgi_server_shows_the_decisions() -> None:
    """The real case: ``create_app()`` under wsgiref, over HTTP, with no logging set up."""
    port = free_port()
    program = textwrap.dedent(
        f"""
        from wsgiref.simple_server import WSGIRequestHandler, make_server
        from otp_service.app import create_app

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args):
                pass

        make_server("127.0.0.1", {port}, create_app(), handler_class=Quiet).serve_forever()
        """
    )
    environ = {
        "OTP_ENV": "testing",
        "OTP_SECRET_KEY": TEST_SECRET,
        "OTP_CAPTCHA_MODE": "off",
        "OTP_AUDIT_LOG": "stderr",
    }
    process = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", program],
        env=child_environ(environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        request = urllib.request.Request(  # noqa: S310 - loopback URL we built
            f"http://127.0.0.1:{port}/send-code",
            data=json.dumps({"phone": PHONE}).encode(),
            headers={"Content-Type": "application/json"},
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
                    assert answer.status == 202
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
    finally:
        stderr = stop_and_read(process)
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    sends = [r for r in records if r.get("logger") == "otp_service.audit"]
    assert [r["event"] for r in sends] == ["send"]
    assert sends[0]["outcome"] == "accepted"
    assert PHONE not in stderr


def test_the_guard_honours_the_setting_when_set(tmp_path: Path) -> None:
    from flask import Flask

    from otp_service import OtpGuard

    path = tmp_path / "guard-audit.log"
    host = Flask("host")
    host.config.update(
        OTP_ENV="testing",
        OTP_SECRET_KEY=TEST_SECRET,
        OTP_CAPTCHA_MODE="off",
        OTP_AUDIT_LOG=str(path),
    )
    OtpGuard(host, url_prefix="/otp")
    answer = host.test_client().post("/otp/send-code", json={"phone": PHONE})
    assert answer.status_code == 202
    sends = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["event"] for line in sends if line["logger"] == "otp_service.audit"] == ["send"]
    assert PHONE not in path.read_text()
