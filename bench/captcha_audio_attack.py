"""The attack the audio captcha must be measured against: matching the package's own recordings.

``otp_service.captcha_render.AudioRenderer`` is the ``captcha`` package's ``AudioCaptcha``, which
speaks each character with the *one* recording the package ships for it (``captcha/data/<c>/``),
changed only in ways an attacker can enumerate: a speed from 0.90 to 1.20 in steps of 0.01 by
nearest-neighbour resampling (31 exact waveforms per character), a volume from 0.8 to 1.2 (which
normalised cross-correlation ignores), mixed almost additively over quieter babble (white noise
and reversed recordings at 0.2-0.6 of the volume), with gaps of one to three seconds, after three
beeps of fixed length. Each spoken character is therefore an exact, sample-aligned copy of one of
24 x 31 waveforms the attacker can compute from the package, under noise that stays quieter.

Attacks, each one guess per challenge (a wrong answer burns a challenge):

- ``match``: normalised cross-correlation (overlap-save FFTs) of every character's recording at
  every one of the 31 speeds against the whole body; then, greedily by score, the ``length``
  strongest peaks that keep the package's minimum gap (one second) between voices, read in time
  order.
- ``energy``: no knowledge of the gaps' length: the ``length`` loudest stretches of the body
  (short-time energy), each read as the template with the best correlation inside it. A cheaper
  and weaker reading of the same weakness, to show it does not hinge on the greedy choice.

A challenge is drawn as the service draws it (:func:`otp_service.core.captcha.generate_challenge`
over :data:`~otp_service.core.captcha.ALPHABET` with the system CSPRNG, the default length) and
rendered by the service's own :class:`~otp_service.captcha_render.AudioRenderer`; solved means the
guess equals the answer after :func:`~otp_service.core.captcha.normalize_answer`, the comparison
``/send-code`` makes. CPU seconds are the attacker's per challenge (``time.process_time``; the
one-off template bank is reported apart). Needs numpy (the ``attack`` extra). Prints a table;
``--save`` appends it to ``bench/results/captcha_audio_attack.md``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

from captcha import audio as package

from otp_service.captcha_render import AudioRenderer
from otp_service.clock import SecretsRandom
from otp_service.core.captcha import ALPHABET, generate_challenge, normalize_answer
from otp_service.settings import Settings

try:
    import numpy as np
    from numpy.typing import NDArray
except ImportError:  # pragma: no cover - the extra is optional
    sys.exit("the attack needs numpy: pip install -e '.[attack]'")

RESULTS = Path(__file__).parent / "results" / "captcha_audio_attack.md"
#: The speeds ``AudioCaptcha._twist_pick`` draws: ``(randbelow(31) + 90) / 100``.
SPEEDS = tuple((90 + step) / 100 for step in range(31))
#: ``create_wave_body`` waits at least one second (``randbelow(...) + WAVE_SAMPLE_RATE``).
MIN_GAP = package.WAVE_SAMPLE_RATE
#: What ``create_wave_body`` puts before and after the body: beeps and silences of fixed length.
HEAD = 3 * len(package.BEEP) + 2 * len(package.SILENCE)
TAIL = len(package.END_BEEP)
#: FFT block of the overlap-save correlation: a few times the longest template.
BLOCK = 1 << 15
#: Short-time energy frame of the ``energy`` attack (50 ms).
FRAME = package.WAVE_SAMPLE_RATE // 20
DEFAULT_LENGTH = next(f.default for f in fields(Settings) if f.name == "captcha_length")

Floats = NDArray[np.float32]


def _centred(samples: bytes | bytearray) -> Floats:
    """Unsigned 8-bit samples as floats around zero."""
    return np.frombuffer(bytes(samples), dtype=np.uint8).astype(np.float32) - 128.0


@dataclass(frozen=True)
class Bank:
    """Every waveform the renderer can speak: per character, its recording at every speed."""

    chars: list[str]
    lengths: NDArray[np.int64]  # (templates,) samples of each template
    spectra: NDArray[np.complex64]  # (templates, BLOCK // 2 + 1) conjugate spectra
    rows: dict[str, slice]  # the templates of each character

    @classmethod
    def build(cls, alphabet: str) -> Bank:
        """Resample each recording with the package's own ``change_speed``, as the renderer does."""
        chars: list[str] = []
        lengths: list[int] = []
        spectra: list[NDArray[np.complex64]] = []
        rows: dict[str, slice] = {}
        for char in alphabet:
            first = len(chars)
            for path in sorted(Path(package.DATA_DIR, char).glob("*.wav")):
                recording = package._read_wave_file(str(path))
                for speed in SPEEDS:
                    template = _centred(package.change_speed(recording, speed))
                    template -= template.mean()
                    template /= np.linalg.norm(template)
                    chars.append(char)
                    lengths.append(len(template))
                    spectra.append(np.conj(np.fft.rfft(template, BLOCK)).astype(np.complex64))
            rows[char] = slice(first, len(chars))
        return cls(chars, np.array(lengths), np.array(spectra), rows)


@dataclass(frozen=True, order=True)
class Peak:
    """A template's best alignment: score first, so that peaks sort by it."""

    score: float
    start: int
    end: int
    char: str

    def clear_of(self, other: Peak) -> bool:
        """Whether the two voices are as far apart as the renderer places them."""
        return self.start >= other.end + MIN_GAP or other.start >= self.end + MIN_GAP


def body_of(wav: bytes) -> Floats:
    """The samples between the opening beeps and the closing one."""
    with wave.open(BytesIO(wav)) as reader:
        samples = reader.readframes(reader.getnframes())
    return _centred(samples)[HEAD : len(samples) - TAIL]


def correlate(body: Floats, bank: Bank, rows: slice) -> Floats:
    """Normalised cross-correlation of ``rows``' templates with ``body`` at every start position.

    :returns: one row per template, one column per start in the body (past its end the body is
        padded with silence).
    """
    lengths = bank.lengths[rows]
    step = BLOCK - int(bank.lengths.max()) + 1
    blocks = -(-len(body) // step)
    padded = np.zeros(blocks * step + BLOCK, dtype=np.float32)
    padded[: len(body)] = body
    corr = np.empty((len(lengths), blocks * step), dtype=np.float32)
    for block in range(blocks):
        spectrum = np.fft.rfft(padded[block * step : block * step + BLOCK])
        window = np.fft.irfft(spectrum * bank.spectra[rows], BLOCK, axis=1)
        corr[:, block * step : (block + 1) * step] = window[:, :step]
    wide = padded.astype(np.float64)
    sums = np.concatenate(([0.0], np.cumsum(wide)))
    squares = np.concatenate(([0.0], np.cumsum(wide * wide)))
    starts = len(body)
    corr = corr[:, :starts]
    for row, length in enumerate(lengths):
        total = sums[length : length + starts] - sums[:starts]
        energy = squares[length : length + starts] - squares[:starts] - total * total / length
        corr[row] /= np.sqrt(np.maximum(energy, 1.0)).astype(np.float32)
    return corr


def match(body: Floats, bank: Bank, length: int) -> str:
    """The ``length`` strongest peaks over all characters that keep the renderer's gaps."""
    peaks: list[Peak] = []
    widest = int(bank.lengths.max())
    for char, rows in bank.rows.items():
        ncc = correlate(body, bank, rows)
        scores = ncc.max(axis=0)
        for _ in range(length):  # a character may be spoken up to ``length`` times
            start = int(scores.argmax())
            end = start + int(bank.lengths[rows][ncc[:, start].argmax()])
            peaks.append(Peak(float(scores[start]), start, end, char))
            scores[max(0, start - widest - MIN_GAP) : end + MIN_GAP] = -np.inf
    chosen: list[Peak] = []
    for peak in sorted(peaks, reverse=True):
        if all(peak.clear_of(other) for other in chosen):
            chosen.append(peak)
            if len(chosen) == length:
                break
    return "".join(peak.char for peak in sorted(chosen, key=lambda peak: peak.start))


def loud_stretches(body: Floats, length: int, width: int) -> list[tuple[int, int]]:
    """The ``length`` loudest non-overlapping stretches of ``width`` samples, in time order."""
    frames = len(body) // FRAME
    energy = (body[: frames * FRAME].reshape(frames, FRAME) ** 2).sum(axis=1)
    span = max(1, width // FRAME)
    loudness = np.convolve(energy, np.ones(span), mode="valid")
    stretches = []
    for _ in range(length):
        frame = int(loudness.argmax())
        stretches.append((frame * FRAME, (frame + span) * FRAME))
        loudness[max(0, frame - span) : frame + span] = -np.inf
    return sorted(stretches)


def energy(body: Floats, bank: Bank, length: int) -> str:
    """Find the voices by loudness alone, then read each as its best-matching template."""
    widest = int(bank.lengths.max())
    margin = widest // 2
    every = slice(0, len(bank.chars))
    guess = []
    for start, end in loud_stretches(body, length, int(bank.lengths.mean())):
        low = max(0, start - margin)
        piece = body[low : min(len(body), end + margin)]
        ncc = correlate(piece, bank, every)
        fits = np.arange(len(piece)) + bank.lengths[:, None] <= len(piece)
        row, _ = np.unravel_index(np.where(fits, ncc, -np.inf).argmax(), ncc.shape)
        guess.append(bank.chars[int(row)])
    return "".join(guess)


ATTACKS: dict[str, Callable[[Floats, Bank, int], str]] = {"match": match, "energy": energy}


@dataclass
class Tally:
    solved: int = 0
    chars_right: int = 0
    chars: int = 0
    cpu: float = 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.captcha_audio_attack", description=__doc__
    )
    parser.add_argument("--challenges", type=int, default=300, help="fresh challenges drawn")
    parser.add_argument("--length", type=int, default=DEFAULT_LENGTH, help="OTP_CAPTCHA_LENGTH")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated")
    parser.add_argument("--save", action="store_true", help=f"append the table to {RESULTS}")
    args = parser.parse_args(argv)
    attacks = {name: ATTACKS[name] for name in args.attacks.split(",") if name}
    started = time.process_time()
    bank = Bank.build(ALPHABET)
    setup = time.process_time() - started
    renderer, rng = AudioRenderer(), SecretsRandom()
    tallies = {name: Tally() for name in attacks}
    for number in range(1, args.challenges + 1):
        answer = generate_challenge(rng, args.length)
        body = body_of(renderer.render_audio(answer))
        for name, attack in attacks.items():
            started = time.process_time()
            guess = attack(body, bank, args.length)
            tally = tallies[name]
            tally.cpu += time.process_time() - started
            tally.solved += normalize_answer(guess) == normalize_answer(answer)
            tally.chars_right += sum(g == a for g, a in zip(guess, answer, strict=False))
            tally.chars += len(answer)
        if number % 50 == 0:
            rates = ", ".join(f"{name} {t.solved / number:.0%}" for name, t in tallies.items())
            print(f"  {number} challenges: {rates}", flush=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        f"### {when}: {args.challenges} fresh audio challenges of {args.length} characters, "
        f"{len(bank.chars)} templates ({setup:.1f} CPU s to build once)",
        "",
        "| attack | solved (one guess each) | characters right | attacker CPU s / challenge |",
        "|---|---|---|---|",
    ]
    for name, tally in tallies.items():
        lines.append(
            f"| {name} | {tally.solved / args.challenges:.1%} ({tally.solved}) "
            f"| {tally.chars_right / tally.chars:.1%} | {tally.cpu / args.challenges:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.save:
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write(table + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
