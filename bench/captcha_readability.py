"""Readability by eye: draw captchas in random derived styles for a person to read, then score.

A trained reader's figure (``bench.captcha_attack``) says nothing about people. This draws
``--count`` images, each in the style of a fresh random secret, into one labelled PNG grid and
keeps the answers in a file beside it; a person writes what they read, one line per image, and
``score`` prints the read rate and every miss. docs/captcha.md records the latest reading.

    python -m bench.captcha_readability draw --seed 29 --out /tmp/read.png
    python -m bench.captcha_readability score --out /tmp/read.png --read my-answers.txt
"""

from __future__ import annotations

import argparse
import io
import random
from pathlib import Path

from PIL import Image, ImageDraw

from otp_service.captcha_render import ImageRenderer
from otp_service.captcha_style import CaptchaStyle
from otp_service.core.captcha import ALPHABET, normalize_answer

WIDTH, HEIGHT, COLUMNS, LABEL = 200, 70, 3, 28


def draw(seed: int, count: int, out: Path) -> None:
    """Write the grid (scaled ×2 for reading) and ``<out>.answers``."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible sample, not a secret
    tiles: list[Image.Image] = []
    answers: list[str] = []
    for _ in range(count):
        style = CaptchaStyle.derive(rng.randbytes(32))
        text = "".join(rng.choice(ALPHABET) for _ in range(5))
        renderer = ImageRenderer(rng=random.Random(rng.random()), style=style)  # noqa: S311
        tiles.append(Image.open(io.BytesIO(renderer.render_image(text))).convert("RGB"))
        answers.append(text)
    rows = -(-count // COLUMNS)
    grid = Image.new("RGB", (COLUMNS * (WIDTH + LABEL), rows * (HEIGHT + 6)), "white")
    pen = ImageDraw.Draw(grid)
    for index, tile in enumerate(tiles):
        x, y = (index % COLUMNS) * (WIDTH + LABEL), (index // COLUMNS) * (HEIGHT + 6)
        pen.text((x + 2, y + HEIGHT // 2 - 5), str(index), fill="black")
        grid.paste(tile, (x + LABEL, y))
    grid.resize((grid.width * 2, grid.height * 2)).save(out)
    Path(f"{out}.answers").write_text("\n".join(answers) + "\n")
    print(f"{count} images in {out}; answers in {out}.answers (do not look before reading)")


def score(out: Path, read: Path) -> None:
    """Print the read rate, comparing answers the way the service does."""
    truth = Path(f"{out}.answers").read_text().split()
    guesses = read.read_text().split()
    misses = [
        (index, expected, got)
        for index, (expected, got) in enumerate(zip(truth, guesses, strict=True))
        if normalize_answer(got) != normalize_answer(expected)
    ]
    right = len(truth) - len(misses)
    print(f"| read | {right}/{len(truth)} | {right / len(truth):.0%} |")
    for index, expected, got in misses:
        print(f"  #{index}: drawn {expected}, read {got}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("draw", "score"))
    parser.add_argument("--out", type=Path, required=True, help="the grid PNG")
    parser.add_argument("--seed", type=int, default=29)
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--read", type=Path, help="what the person read, one line per image")
    args = parser.parse_args()
    if args.step == "draw":
        draw(args.seed, args.count, args.out)
    elif args.read is None:
        parser.error("score needs --read")
    else:
        score(args.out, args.read)


if __name__ == "__main__":
    main()
