"""A Redis that keeps nothing on disk is reported in production, by /readyz and check-config.

Opt-outs, consumed token ids, allow-lists and pumping blocks must survive a Redis restart; a
server started with ``--save "" --appendonly no`` (the private test server) loses them all. The
servers here are real, private redis-server processes: one without persistence, one with AOF,
one whose ``CONFIG`` command is disabled (as managed services often do).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from otp_service import ConsoleGateway, OtpService, create_app
from otp_service.cli import main
from otp_service.settings import Settings
from otp_service.store import MemoryStore
from otp_service.store.redis import RedisStore
from tests.redis_server import RedisProcess, free_port
from tests.test_settings import PRODUCTION

pytestmark = pytest.mark.redis

NO_PERSISTENCE = "keeps nothing on disk (appendonly no, save"


@pytest.fixture
def no_config_redis_url(tmp_path: Path) -> Iterator[str]:
    """A server of this test's own, without persistence and with CONFIG disabled."""
    server = RedisProcess(free_port(), tmp_path, extra_args=("--rename-command", "CONFIG", ""))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def readyz(url: str, env: str = "production") -> dict[str, object]:
    settings = Settings.from_mapping({**PRODUCTION, "OTP_REDIS_URL": url, "OTP_ENV": env})
    store = RedisStore.from_url(url)
    try:
        service = OtpService(settings, store=store, gateway=ConsoleGateway())
        response = create_app(service=service).test_client().get("/readyz")
    finally:
        store.close()
    assert response.status_code == 200
    body: dict[str, object] = response.get_json()
    return body


def test_readyz_warns_in_production_when_redis_keeps_nothing_on_disk(redis_url: str) -> None:
    body = readyz(redis_url)
    assert body["status"] == "ready"
    warnings = body["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 1
    assert NO_PERSISTENCE in warnings[0] and "opt-out" in warnings[0]


def test_readyz_is_quiet_with_aof(durable_redis_url: str) -> None:
    assert readyz(durable_redis_url) == {"status": "ready"}


def test_readyz_is_quiet_when_config_is_disabled(no_config_redis_url: str) -> None:
    assert readyz(no_config_redis_url) == {"status": "ready"}


def test_readyz_warns_only_in_production(redis_url: str) -> None:
    assert readyz(redis_url, env="development") == {"status": "ready"}


def test_readyz_on_the_memory_store_has_nothing_to_report(redis_url: str) -> None:
    settings = Settings.from_mapping({**PRODUCTION, "OTP_REDIS_URL": redis_url})
    service = OtpService(settings, store=MemoryStore(), gateway=ConsoleGateway())
    response = create_app(service=service).test_client().get("/readyz")
    assert response.get_json() == {"status": "ready"}


def test_every_cluster_primary_is_asked(redis_cluster_url: str) -> None:
    from otp_service.store.redis import ClusterRedisStore

    store = ClusterRedisStore.from_url(redis_cluster_url)
    try:
        warning = store.persistence_warning()
    finally:
        store.close()
    assert warning is not None and NO_PERSISTENCE in warning
    assert warning.startswith("Redis 127.0.0.1:")


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))


def check_config(url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OTP_REDIS_URL", url)
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.usefixtures("production_env")
def test_check_config_warns_in_production_when_redis_keeps_nothing_on_disk(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = check_config(redis_url, monkeypatch)
    assert f"warning: OTP_REDIS_URL: Redis {NO_PERSISTENCE}" in output
    assert output.rstrip().endswith("configuration ok (1 warning)")


@pytest.mark.usefixtures("production_env")
def test_check_config_is_quiet_with_aof_or_without_config(
    durable_redis_url: str, no_config_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for url in (durable_redis_url, no_config_redis_url):
        output = check_config(url, monkeypatch)
        assert "warning" not in output
        assert output.rstrip().endswith("configuration ok")


@pytest.mark.usefixtures("production_env")
def test_check_config_says_when_it_could_not_ask(monkeypatch: pytest.MonkeyPatch) -> None:
    output = check_config(f"redis://127.0.0.1:{free_port()}/0", monkeypatch)
    assert "warning: OTP_REDIS_URL: unreachable, so its persistence was not checked" in output
