"""The bot gate's decisions: what a send must prove, given the settings and the risk signals.

Kept pure (no store, no clock) so every combination of ``OTP_CAPTCHA_MODE``, ``OTP_CAPTCHA_KIND``,
tripped signals and what a request brings can be tested without a service; the adapter
(:class:`otp_service.bot_gate.BotGate`) reads the signals and checks the proofs this asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from otp_service.core.pow import level_for

#: ``OTP_CAPTCHA_KIND`` values under which a send may have to bring a proof of work.
WORK_KINDS = frozenset({"pow", "both", "auto"})


@dataclass(frozen=True, slots=True)
class BotProof:
    """What a send brings to the bot gate: an image (or audio) answer, an ALTCHA payload, both."""

    captcha_id: str | None = None
    captcha_answer: str | None = None
    altcha: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.captcha_id or self.captcha_answer or self.altcha)


@dataclass(frozen=True, slots=True)
class Demand:
    """What the gate asks of one send.

    :param kinds: the proofs to check (``image``, ``pow``); empty when nothing is checked.
    :param level: the proof-of-work level at least (0 unless signals tripped).
    :param waived: the adaptive mode let the send in without a proof; the admission must then
        re-check the send signals atomically (the read alone would be a race).
    """

    kinds: tuple[str, ...]
    level: int = 0
    waived: bool = False


def kinds_for(kind: str, signals: Sequence[str] = ()) -> tuple[str, ...]:
    """The proofs ``OTP_CAPTCHA_KIND`` asks for. ``auto`` adds a proof of work to the image once a
    risk signal trips: a trained reader solves most images (docs/captcha.md), so under risk each
    send must also cost the sender CPU."""
    if kind == "auto":
        return ("image", "pow") if signals else ("image",)
    return ("image", "pow") if kind == "both" else (kind,)


def reads_signals(mode: str, kind: str, proof: BotProof) -> bool:
    """Whether the send's risk signals must be read (one store read) before deciding.

    Only the adaptive mode reads them: for a request that brings nothing (do we ask at all?) and,
    when the kind may want work, for any request (how hard must the work be?). A request that
    brings an image answer under an image-only kind has it checked whatever the signals say.
    """
    return mode == "adaptive" and (proof.empty or kind in WORK_KINDS)


def demand(
    mode: str, kind: str, signals: Sequence[str], proof: BotProof, levels: Sequence[int]
) -> Demand:
    """What a send must prove. ``signals`` are the tripped ones (empty when not read).

    ``off`` asks nothing. ``adaptive`` lets a request that brings nothing pass unless a signal
    trips; one that brings a proof has it checked as in ``always`` (its user solved one, so a
    wrong one is refused). Each tripped signal raises the proof-of-work level by one.
    """
    if mode == "off":
        return Demand(kinds=())
    if mode == "adaptive" and not signals and proof.empty:
        return Demand(kinds=(), waived=True)
    return Demand(kinds=kinds_for(kind, signals), level=level_for(len(signals), levels))


def lacks(kinds: Sequence[str], proof: BotProof) -> bool:
    """Whether ``proof`` is missing a part that ``kinds`` asks for."""
    return ("image" in kinds and not (proof.captcha_id and proof.captcha_answer)) or (
        "pow" in kinds and not proof.altcha
    )


def closed_detail(kinds: Sequence[str]) -> str:
    """The ``captcha_required`` detail naming what to fetch first."""
    details: dict[tuple[str, ...], str] = {
        ("image",): "Solve a captcha first (POST /captcha).",
        ("pow",): "Solve a proof of work first (POST /pow).",
    }
    return details.get(
        tuple(kinds), "Solve a captcha (POST /captcha) and a proof of work (POST /pow) first."
    )
