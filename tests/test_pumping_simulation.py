"""A synthetic SMS pumping attack mixed with normal traffic, replayed through OtpService.

The attacker sends codes to random numbers of one range, each from a fresh IP in a fresh subnet
(so per-IP and per-subnet limits never see it twice), and verifies nothing. Normal users arrive
from everywhere, to numbers all over the country, and nine in ten enter their code within a
minute and a half. The shipped defaults decide (captcha off, as in tests). The figures printed
here are the ones quoted in docs/pumping.md.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from otp_service import ConsoleGateway, OtpService
from otp_service.errors import OtpError
from otp_service.settings import Settings
from otp_service.store import MemoryStore, Store
from tests.conftest import FakeClock

ATTACK_RANGE = "+861391234"
LEGIT_PER_MINUTE = 10
ATTACK_EVERY = 10.0  # seconds between attack messages: 360 an hour
CONVERSION = 0.9


@dataclass
class Outcome:
    attack_tried: int = 0
    attack_sent: int = 0
    legit_tried: int = 0
    legit_refused: int = 0
    first_block_after: int | None = None

    @property
    def legit_refused_share(self) -> float:
        return self.legit_refused / max(1, self.legit_tried)


def random_ip(rng: random.Random) -> str:
    return (
        f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    )


def legit_number(rng: random.Random) -> str:
    while True:
        number = f"+86{rng.choice(['138', '139', '150', '186'])}{rng.randint(0, 99_999_999):08d}"
        if not number.startswith(ATTACK_RANGE):
            return number


def events(hours: float, rng: random.Random) -> Iterator[tuple[float, int, str, str, str]]:
    """(time, order, kind, number, ip) in time order: legit sends, their verifies, attacks."""
    queue: list[tuple[float, int, str, str, str]] = []
    order = 0
    end = hours * 3600
    t = 0.0
    while t < end:
        t += rng.expovariate(LEGIT_PER_MINUTE / 60)
        order += 1
        queue.append((t, order, "legit", legit_number(rng), random_ip(rng)))
    attack_at = 0.0
    while attack_at < end:
        attack_at += ATTACK_EVERY
        order += 1
        number = f"{ATTACK_RANGE}{rng.randint(0, 9999):04d}"
        queue.append((attack_at, order, "attack", number, random_ip(rng)))
    heapq.heapify(queue)
    while queue:
        yield heapq.heappop(queue)


def simulate(store: Store, settings: Settings, hours: float, seed: int = 12) -> Outcome:
    rng = random.Random(seed)
    clock = FakeClock()
    start = clock.value
    gateway = ConsoleGateway()
    service = OtpService(settings, store=store, gateway=gateway, clock=clock)
    outcome = Outcome()
    verifies: list[tuple[float, str, str]] = []
    for at, _, kind, number, ip in events(hours, rng):
        while verifies and verifies[0][0] <= at:
            when, who, from_ip = heapq.heappop(verifies)
            clock.value = start + when
            code = gateway.last_code(who)
            assert code is not None
            service.verify(who, code, client_ip=from_ip)
        clock.value = start + at
        if kind == "attack":
            outcome.attack_tried += 1
            try:
                service.send_code(number, client_ip=ip)
            except OtpError:
                if outcome.first_block_after is None:
                    outcome.first_block_after = outcome.attack_sent
                continue
            outcome.attack_sent += 1
            continue
        outcome.legit_tried += 1
        try:
            service.send_code(number, client_ip=ip)
        except OtpError:
            outcome.legit_refused += 1
            continue
        if rng.random() < CONVERSION:
            heapq.heappush(verifies, (at + rng.uniform(10, 90), number, ip))
    return outcome


def report(name: str, hours: float, outcome: Outcome) -> None:
    print(
        f"\n[{name}, {hours:g} h] attack: {outcome.attack_sent} of {outcome.attack_tried} "
        f"messages sent, first block after {outcome.first_block_after}; legit: "
        f"{outcome.legit_refused} of {outcome.legit_tried} refused "
        f"({outcome.legit_refused_share:.2%})"
    )


@pytest.fixture
def defaults(settings_factory: Callable[..., Settings]) -> Settings:
    """The shipped defaults (captcha off, as everywhere in tests)."""
    return settings_factory()


def test_attack_is_cut_early_and_legitimate_traffic_flows(defaults: Settings) -> None:
    hours = 3.0
    outcome = simulate(MemoryStore(), defaults, hours)
    report("memory", hours, outcome)
    assert outcome.first_block_after == defaults.pumping_floor + 1
    # Each block expiry lets one message through before a longer block: 21 + a handful.
    assert outcome.attack_sent <= defaults.pumping_floor + 6
    assert outcome.attack_tried == 1080
    assert outcome.legit_tried > 1500
    assert outcome.legit_refused_share <= 0.01


@pytest.mark.redis
def test_the_same_on_redis(defaults: Settings, redis_url: str) -> None:
    from otp_service.store.redis import RedisStore

    store = RedisStore.from_url(redis_url)
    try:
        outcome = simulate(store, defaults, hours=1.0)
    finally:
        store.close()
    report("redis", 1.0, outcome)
    assert outcome.first_block_after == defaults.pumping_floor + 1
    assert outcome.attack_sent <= defaults.pumping_floor + 3
    assert outcome.legit_refused_share <= 0.01
