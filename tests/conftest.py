"""Shared fixtures: settings factory, fake clock and randomness, stores for both backends."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest

from otp_service.settings import Settings
from otp_service.store import MemoryStore, Store

pytest_plugins = [
    "tests.redis_server",
    "tests.huawei_sim",
    "tests.huawei_manage_sim",
    "tests.redis_cluster",
]

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.value = start

    def now(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


class ImageDrawer(Protocol):
    def render_image(self, text: str) -> bytes: ...


class RecordingRenderer:
    """A captcha renderer that remembers each challenge's text, so a test can answer it.

    With ``inner`` (e.g. the real image renderer, for a browser) it draws images through it;
    otherwise, and for audio, it returns placeholder bytes.
    """

    def __init__(self, inner: ImageDrawer | None = None) -> None:
        self.inner = inner
        self.texts: list[str] = []
        #: The texts spoken, in order (the audio is placeholder bytes).
        self.spoken: list[str] = []

    def render_image(self, text: str) -> bytes:
        self.texts.append(text)
        return self.inner.render_image(text) if self.inner else b"\x89PNG test captcha"

    def render_audio(self, text: str) -> bytes:
        self.spoken.append(text)
        return b"RIFF test captcha"

    @property
    def last_answer(self) -> str:
        return self.texts[-1]


class SeededRandom:
    """Deterministic stand-in for the secrets module."""

    def __init__(self, seed: int = 7) -> None:
        self._random = random.Random(seed)

    def randbelow(self, n: int) -> int:
        return self._random.randrange(n)

    def token_bytes(self, n: int) -> bytes:
        return self._random.randbytes(n)


@pytest.fixture(autouse=True)
def _clean_otp_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own OTP_* variables."""
    for name in list(os.environ):
        if name.startswith("OTP_"):
            monkeypatch.delenv(name)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def seeded_rng() -> SeededRandom:
    return SeededRandom()


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    """Settings for tests: a fixed secret, captcha off, every default otherwise."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "env": "testing",
            "secret_key": TEST_SECRET,
            "captcha_mode": "off",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.memory),
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis),
    ]
)
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """Every store backend, for contract tests. Redis starts only when a Redis test runs."""
    if request.param == "memory":
        yield MemoryStore()
        return
    from otp_service.store.redis import ClusterRedisStore, RedisStore

    if request.param == "cluster":
        backend: RedisStore = ClusterRedisStore.from_url(
            request.getfixturevalue("redis_cluster_url")
        )
    else:
        backend = RedisStore.from_url(request.getfixturevalue("redis_url"))
    try:
        yield backend
    finally:
        backend.close()
