"""The attack the image captcha must be measured against: a CNN trained on the service's renderer.

The renderer is open source, so an attacker draws as many labelled images as they like with
``otp_service.captcha_render.ImageRenderer`` and trains a reader. This script does exactly that,
within a wall-clock budget, on the CPU:

1. draw ``--train-images`` labelled challenges with the service's own renderer and alphabet
   (in ``--workers`` processes);
2. train a small CRNN — four convolutional blocks, a bidirectional GRU, CTC loss — for
   ``--minutes`` of wall-clock time (drawing counts against nothing: an attacker draws once);
3. draw ``--test-images`` *fresh* challenges and count one guess per challenge as solved when it
   equals the answer after :func:`otp_service.core.captcha.normalize_answer`, the comparison
   ``/send-code`` makes (a wrong answer burns a challenge, so one guess is all an attacker gets).

``--scenario a``: the attacker knows everything, the deployment's style included (as when a
deployment's secret leaked, or a library user draws in the public style): training and test
images share one style. ``--scenario b``: the attacker has the code but not the secret, so it
draws every training image in a style derived from a fresh random secret (covering every style
the code can produce) and is tested on one deployment's style it never saw.

Needs the ``attack`` extra: ``pip install -e '.[attack]'`` (``torch==2.13.0``, a CPU build).
Results are printed as a table and appended to ``bench/results/captcha_attack.md`` with
``--save``. Not part of the test suite: training takes minutes and both cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image

from otp_service.captcha_render import ImageRenderer
from otp_service.captcha_style import CaptchaStyle
from otp_service.core.captcha import ALPHABET, normalize_answer

try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - the extra is optional
    sys.exit("the attack needs PyTorch: pip install -e '.[attack]' (torch==2.13.0, CPU build)")

HEIGHT, WIDTH = 64, 192
LENGTH = 5
RESULTS = Path(__file__).parent / "results" / "captcha_attack.md"
SCENARIOS = {
    "a": "(a) knows the repository and the deployment's style",
    "b": "(b) knows the code, not the deployment's secret",
}


#: The deployment under attack: its secret is never used to draw training images in (b).
DEPLOYMENT_SECRET = b"the deployment's own secret, unknown to the attacker"


def _draw(seed: int, count: int, secret: bytes | None) -> tuple[np.ndarray, list[str]]:
    """``count`` labelled challenges (one worker's share), in ``secret``'s style, or each in the
    style of a fresh random secret when ``secret`` is None."""
    rng = random.Random(seed)
    fixed = ImageRenderer(
        rng=random.Random(seed ^ 0x5EED), style=CaptchaStyle.derive(secret or b"")
    )
    images = np.empty((count, HEIGHT, WIDTH), dtype=np.uint8)
    labels = []
    for i in range(count):
        text = "".join(rng.choice(ALPHABET) for _ in range(LENGTH))
        renderer = fixed
        if secret is None:
            style = CaptchaStyle.derive(rng.randbytes(32))
            renderer = ImageRenderer(rng=random.Random(rng.random()), style=style)
        png = renderer.render_image(text)
        image = Image.open(BytesIO(png)).convert("L").resize((WIDTH, HEIGHT))
        images[i] = np.asarray(image)
        labels.append(text)
    return images, labels


def draw(count: int, workers: int, seed: int, secret: bytes | None) -> tuple[np.ndarray, list[str]]:
    shares = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    with multiprocessing.Pool(workers) as pool:
        parts = pool.starmap(_draw, [(seed * 1000 + i, n, secret) for i, n in enumerate(shares)])
    return np.concatenate([p[0] for p in parts]), [t for p in parts for t in p[1]]


class Reader(nn.Module):
    """CRNN: conv features per column, a BiGRU over the columns, CTC over alphabet + blank."""

    def __init__(self, classes: int) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, pool: tuple[int, int]) -> list[nn.Module]:
            return [
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(pool),
            ]

        self.features = nn.Sequential(
            *block(1, 32, (2, 2)),
            *block(32, 64, (2, 2)),
            *block(64, 128, (2, 1)),
            *block(128, 128, (2, 1)),
        )
        self.rnn = nn.GRU(128 * (HEIGHT // 16), 128, bidirectional=True, batch_first=True)
        self.out = nn.Linear(256, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # (batch, channels, h, w)
        b, c, h, w = f.shape
        seq = f.permute(0, 3, 1, 2).reshape(b, w, c * h)
        out, _ = self.rnn(seq)
        return self.out(out)  # (batch, columns, classes)


def decode(logits: torch.Tensor) -> list[str]:
    """Greedy CTC decoding: best class per column, repeats merged, blanks dropped."""
    texts = []
    for row in logits.argmax(-1).tolist():
        chars, previous = [], 0
        for k in row:
            if k != previous and k != 0:
                chars.append(ALPHABET[k - 1])
            previous = k
        texts.append("".join(chars))
    return texts


@dataclass
class Checkpoint:
    minutes: float
    solved: float
    images_seen: int


def tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div_(255.0).unsqueeze(1)


def solve_rate(model: Reader, images: np.ndarray, labels: list[str]) -> float:
    model.eval()
    solved = 0
    with torch.no_grad():
        for start in range(0, len(labels), 256):
            guesses = decode(model(tensor(images[start : start + 256])))
            for guess, label in zip(guesses, labels[start : start + 256], strict=True):
                solved += normalize_answer(guess) == normalize_answer(label)
    model.train()
    return solved / len(labels)


def train(
    images: np.ndarray,
    labels: list[str],
    test: tuple[np.ndarray, list[str]],
    minutes: float,
    checkpoints: list[float],
) -> list[Checkpoint]:
    index = {c: i + 1 for i, c in enumerate(ALPHABET)}
    targets = torch.tensor([[index[c] for c in t] for t in labels], dtype=torch.long)
    model = Reader(len(ALPHABET) + 1)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    batch = 64
    started = time.monotonic()
    pending = sorted(c for c in checkpoints if c <= minutes) or [minutes]
    if pending[-1] != minutes:
        pending.append(minutes)
    results: list[Checkpoint] = []
    seen = 0
    generator = torch.Generator().manual_seed(0)
    while pending:
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order) - batch + 1, batch):
            chosen = order[start : start + batch]
            logits = model(tensor(images[chosen.numpy()]))
            log_probs = logits.log_softmax(-1).permute(1, 0, 2)
            lengths = torch.full((batch,), log_probs.shape[0], dtype=torch.long)
            loss = ctc(log_probs, targets[chosen], lengths, torch.full((batch,), LENGTH))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            seen += batch
            elapsed = (time.monotonic() - started) / 60
            if elapsed >= pending[0]:
                rate = solve_rate(model, *test)
                results.append(Checkpoint(pending.pop(0), rate, seen))
                print(f"  {results[-1].minutes:g} min: {rate:.1%} solved", flush=True)
                if not pending:
                    break
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/captcha_attack.py", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget (wall)")
    parser.add_argument("--checkpoints", default="2.5,10,60", help="minutes to report at")
    parser.add_argument("--train-images", type=int, default=60_000)
    parser.add_argument("--test-images", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (cores used)")
    parser.add_argument("--scenario", choices=("a", "b"), default="a")
    parser.add_argument("--save", action="store_true", help=f"append the table to {RESULTS}")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    drawing = time.monotonic()
    training_secret = DEPLOYMENT_SECRET if args.scenario == "a" else None
    images, labels = draw(args.train_images, args.workers, seed=1, secret=training_secret)
    test = draw(args.test_images, args.workers, seed=2, secret=DEPLOYMENT_SECRET)
    print(
        f"drew {len(labels)} training and {len(test[1])} fresh test challenges "
        f"in {time.monotonic() - drawing:.0f} s",
        flush=True,
    )
    checkpoints = [float(c) for c in args.checkpoints.split(",") if c]
    results = train(images, labels, test, args.minutes, checkpoints)
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        f"### {when}: {args.train_images:,} training images, {args.test_images:,} fresh "
        f"challenges, {args.threads} torch threads",
        "",
        "| scenario | training | solved (one guess each) | images seen |",
        "|---|---|---|---|",
    ]
    scenario = SCENARIOS[args.scenario]
    for point in results:
        lines.append(
            f"| {scenario} | {point.minutes:g} min | {point.solved:.1%} | {point.images_seen:,} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.save:
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write(table + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
