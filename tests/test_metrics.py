"""Prometheus metrics: fed by audited decisions, safe labels, merged across worker processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from otp_service import ConsoleGateway, create_app
from otp_service.audit import AuditLog, Decision, Event
from otp_service.errors import ContentBlocked, ProviderUnavailable, RateLimited
from otp_service.metrics import Metrics, label
from otp_service.settings import Settings
from otp_service.sms import SendResult, SmsMessage
from otp_service.store import MemoryStore
from tests.conftest import FakeClock
from tests.redis_server import RedisProcess

PHONE = "+8613812345678"
TEST_PHONE = "+8613800000000"
TEST_CODE = "246810"


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as ``(sample name, sorted labels) -> value``."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class FailingGateway:
    """A provider that is down: every send fails as the Huawei gateway's timeouts do."""

    name = "huawei"

    def send(self, message: SmsMessage) -> SendResult:
        raise ProviderUnavailable("The provider timed out.", reason="timeout")


@pytest.fixture
def app(settings_factory: Callable[..., Settings], fake_clock: FakeClock) -> Flask:
    settings = settings_factory(test_numbers=((TEST_PHONE, TEST_CODE),))
    return create_app(settings, store=MemoryStore(), gateway=ConsoleGateway(), clock=fake_clock)


def test_send_verify_and_token_decisions_are_counted(app: Flask) -> None:
    client = app.test_client()
    assert client.post("/send-code", json={"phone": PHONE}).status_code == 202
    assert client.post("/send-code", json={"phone": TEST_PHONE}).status_code == 202
    assert client.post("/verify", json={"phone": TEST_PHONE, "code": "000000"}).status_code == 400
    approved = client.post("/verify", json={"phone": TEST_PHONE, "code": TEST_CODE})
    token = approved.get_json()["token"]
    assert client.post("/tokens/check", json={"token": token}).status_code == 200
    assert client.post("/tokens/check", json={"token": token + "x"}).status_code == 401

    samples = scrape(client)
    assert value(samples, "otp_sends_total", outcome="sent", reason="") == 1
    assert value(samples, "otp_sends_total", outcome="test_number", reason="") == 1
    assert value(samples, "otp_verifications_total", outcome="refused", reason="code_invalid") == 1
    assert value(samples, "otp_verifications_total", outcome="approved", reason="") == 1
    assert value(samples, "otp_token_checks_total", outcome="valid", reason="") == 1
    assert value(samples, "otp_token_checks_total", outcome="refused", reason="token_invalid") == 1
    latency = value(samples, "otp_provider_latency_seconds_count", provider="console", outcome="ok")
    assert latency == 1


def test_refusals_carry_reason_and_limit_axis(app: Flask) -> None:
    client = app.test_client()
    assert client.post("/send-code", json={"phone": PHONE}).status_code == 202
    assert client.post("/send-code", json={"phone": PHONE}).status_code == 429
    assert client.post("/send-code", json={"phone": "12"}).status_code == 400

    samples = scrape(client)
    assert (
        value(samples, "otp_refusals_total", event="send", reason="rate_limited", limit="number")
        == 1
    )
    assert value(samples, "otp_refusals_total", event="send", reason="invalid_phone", limit="") == 1
    assert value(samples, "otp_sends_total", outcome="refused", reason="rate_limited") == 1


def test_captcha_outcomes_are_counted(
    settings_factory: Callable[..., Settings], fake_clock: FakeClock
) -> None:
    app = create_app(
        settings_factory(captcha_mode="always"),
        store=MemoryStore(),
        gateway=ConsoleGateway(),
        clock=fake_clock,
    )
    client = app.test_client()
    assert client.post("/send-code", json={"phone": PHONE}).status_code == 400
    challenge = client.post("/captcha").get_json()["captcha_id"]
    wrong = {"phone": PHONE, "captcha_id": challenge, "captcha_answer": "!!!!!"}
    assert client.post("/send-code", json=wrong).status_code == 400

    samples = scrape(client)
    assert value(samples, "otp_captcha_total", outcome="required") == 1
    assert value(samples, "otp_captcha_total", outcome="invalid") == 1


def test_provider_failure_counts_error_code_and_latency(
    settings_factory: Callable[..., Settings], fake_clock: FakeClock
) -> None:
    app = create_app(
        settings_factory(), store=MemoryStore(), gateway=FailingGateway(), clock=fake_clock
    )
    client = app.test_client()
    assert client.post("/send-code", json={"phone": PHONE}).status_code == 502

    samples = scrape(client)
    errors = value(
        samples,
        "otp_provider_errors_total",
        provider="huawei",
        error="provider_unavailable",
        provider_code="timeout",
    )
    assert errors == 1
    assert (
        value(
            samples,
            "otp_provider_latency_seconds_count",
            provider="huawei",
            outcome="provider_unavailable",
        )
        == 1
    )


@pytest.mark.redis
def test_store_outage_is_counted(
    redis_process: RedisProcess, settings_factory: Callable[..., Settings], fake_clock: FakeClock
) -> None:
    app = create_app(
        settings_factory(redis_url=redis_process.url), gateway=ConsoleGateway(), clock=fake_clock
    )
    redis_process.stop()
    client = app.test_client()
    assert client.post("/send-code", json={"phone": PHONE}).status_code == 503

    samples = scrape(client)
    assert value(samples, "otp_store_errors_total", event="send") == 1
    assert value(samples, "otp_sends_total", outcome="refused", reason="store_unavailable") == 1


def test_content_blocks_delivery_reports_opt_outs_and_captchas_are_counted() -> None:
    metrics = Metrics()
    audit = AuditLog(b"k" * 32, observers=[metrics])
    blocked = ContentBlocked("Blocked.", rule="url-shortener", group="links")
    audit.refused(Event("send", phone=PHONE), blocked)
    audit.record(Event("delivery_report", details={"status": "DELIVRD"}), "recorded")
    audit.record(Event("delivery_report", details={"status": "DELIVRD"}), "duplicate")
    audit.record(Event("uplink", phone=PHONE), "opted_out")
    audit.accepted(Event("send", phone=PHONE, details={"shadowed": ["prefix"]}))
    audit.accepted(Event("captcha_create"))

    text = metrics.exposition()[0].decode()
    assert 'otp_content_blocks_total{group="links",rule="url-shortener"} 1.0' in text
    assert 'otp_delivery_reports_total{outcome="recorded",status="DELIVRD"} 1.0' in text
    assert 'otp_delivery_reports_total{outcome="duplicate",status="DELIVRD"} 1.0' in text
    assert 'otp_uplinks_total{outcome="opted_out"} 1.0' in text
    assert 'otp_shadow_hits_total{rule="prefix"} 1.0' in text
    assert 'otp_captcha_total{outcome="issued"} 1.0' in text
    assert "8613812345678" not in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("rate_limited", "rate_limited", id="code"),
        pytest.param("E000510", "E000510", id="provider-code"),
        pytest.param(None, "", id="none"),
        pytest.param("+8613812345678", "other", id="e164"),
        pytest.param("8613812345678", "other", id="digits"),
        pytest.param("code 123456 7", "other", id="spaces"),
        pytest.param("x" * 65, "other", id="too-long"),
        pytest.param("status\n", "other", id="newline"),
    ],
)
def test_labels_never_carry_numbers_or_free_text(raw: object, expected: str) -> None:
    assert label(raw) == expected


def test_a_failing_observer_does_not_fail_the_decision(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def observe(self, decision: Decision) -> None:
            raise RuntimeError("observer bug")

    counted = Metrics()
    audit = AuditLog(b"k" * 32, observers=[Broken(), counted])
    audit.refused(Event("verify"), RateLimited("Slow down.", limit="verify_ip", retry_after=5))

    assert "audit observer Broken failed" in caplog.text
    assert 'otp_refusals_total{event="verify",limit="verify_ip",reason="rate_limited"} 1.0' in (
        counted.exposition()[0].decode()
    )


def test_subscribing_twice_counts_once() -> None:
    metrics = Metrics()
    audit = AuditLog(b"k" * 32)
    audit.subscribe(metrics)
    audit.subscribe(metrics)
    audit.accepted(Event("token_check"))
    assert (
        'otp_token_checks_total{outcome="valid",reason=""} 1.0' in metrics.exposition()[0].decode()
    )


WORKER = textwrap.dedent(
    """
    from otp_service.audit import AuditLog, Event
    from otp_service.metrics import Metrics

    audit = AuditLog(b"k" * 32, observers=[Metrics()])
    details = {"provider": "console", "provider_seconds": 0.2}
    audit.record(Event("send", details=details), "accepted")
    """
)


def test_multiprocess_exposition_sums_every_worker(tmp_path: Path) -> None:
    """Two processes (as two gunicorn workers) write values; one scrape sees both."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", WORKER], env=env, check=True, timeout=60)

    body, content_type = Metrics(multiprocess_dir=str(directory)).exposition()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert 'otp_sends_total{outcome="sent",reason=""} 2.0' in text
    assert 'otp_provider_latency_seconds_count{outcome="ok",provider="console"} 2.0' in text
