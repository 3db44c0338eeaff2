"""Money budget: a per-destination cost table and daily / monthly spend ceilings.

Limits count messages; a pumping ring's bill counts money, and premium destinations cost a
hundred times more than home ones. Each send *reserves* its cost atomically (one ``tally``: add,
then read the totals); if a ceiling would be passed the reservation is returned and the send
refused, so parallel sends can never overshoot. A send that then fails at the provider gets its
reservation back. Amounts are kept in integer micro-units, so counters stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from otp_service.core.keys import Keys
from otp_service.errors import BudgetExhausted
from otp_service.settings import Settings
from otp_service.store import Store

MICRO = 1_000_000
DAY_TTL = 2 * 86400
MONTH_TTL = 32 * 86400


@dataclass(frozen=True, slots=True)
class Reservation:
    """Money set aside for one send; :meth:`Budget.refund` gives it back."""

    micros: int
    keys: tuple[str, ...]


class Budget:
    """Reserves the cost of each send against the ceilings (``OTP_BUDGET_*``)."""

    def __init__(self, store: Store, keys: Keys, settings: Settings) -> None:
        self.store = store
        self.keys = keys
        self.costs = dict(settings.budget_costs)
        self.ceilings = {"day": settings.budget_daily, "month": settings.budget_monthly}

    @property
    def enabled(self) -> bool:
        return bool(self.costs) and any(self.ceilings.values())

    def cost_of(self, region: str) -> float:
        """One message's cost to ``region`` (``*`` in the table covers the rest; else 0)."""
        return self.costs.get(region, self.costs.get("*", 0.0))

    def reserve(self, region: str, now: float) -> Reservation | None:
        """Set the cost of one message aside, or refuse.

        :raises BudgetExhausted: a ceiling would be passed; carries ``period`` and ``spent``.
        """
        micros = round(self.cost_of(region) * MICRO)
        if not self.enabled or micros <= 0:
            return None
        periods = self._periods(now)
        keys = tuple(key for _, key, _ in periods)
        increments = dict.fromkeys(keys, micros)
        totals = self.store.tally(increments, keys, ttl=MONTH_TTL, now=now)
        for (period, _, ceiling), total in zip(periods, totals, strict=True):
            if ceiling and total > round(ceiling * MICRO):
                self.refund(Reservation(micros, keys), now)
                # The ceiling itself is the operator's business, not the caller's.
                raise BudgetExhausted(
                    f"The {'daily' if period == 'day' else 'monthly'} sending budget is exhausted.",
                    period=period,
                )
        return Reservation(micros, keys)

    def refund(self, reservation: Reservation | None, now: float) -> None:
        """Give back a reservation whose message was not sent."""
        if reservation is None:
            return
        increments = dict.fromkeys(reservation.keys, -reservation.micros)
        self.store.tally(increments, (), ttl=MONTH_TTL, now=now)

    def spent(self, now: float) -> dict[str, float]:
        """Spend so far in the current day and month (operators, audit)."""
        periods = self._periods(now)
        totals = self.store.tally({}, [key for _, key, _ in periods], ttl=MONTH_TTL, now=now)
        return {
            period: total / MICRO for (period, _, _), total in zip(periods, totals, strict=True)
        }

    def _periods(self, now: float) -> list[tuple[str, str, float]]:
        moment = datetime.fromtimestamp(now, UTC)
        return [
            ("day", self.keys.budget_spend(f"day:{moment:%Y-%m-%d}"), self.ceilings["day"]),
            ("month", self.keys.budget_spend(f"month:{moment:%Y-%m}"), self.ceilings["month"]),
        ]
