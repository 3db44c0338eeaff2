"""How a deployment's captcha images look, derived from its secret.

The renderer is open source, so anyone can draw unlimited labelled images in the public style and
train a reader on them (``bench/captcha_attack.py`` does, scenario (a)). Deriving the style —
fonts, glyph sizes, rotation, spacing, strokes, noise, warp — from the server secret means an
attacker who has the code but not the secret must train on every style the code can produce and
hope the deployment's is among them (scenario (b)). That makes training slower and the reader
weaker; it does not make it impossible, which is why docs/captcha.md reports both figures and the
proof of work backs the image up.

Every range below stays inside what a person reads at a glance (dark text on a light background,
rotation within ±28°, glyphs that touch at most slightly); the ranges were narrowed until a
person read 92 % of 60 images (``bench/captcha_readability.py``; docs/captcha.md records it).
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass
from pathlib import Path

from captcha.image import DEFAULT_FONTS

#: Fonts the style may draw from when they are installed (Debian's ``fonts-dejavu-core``, which
#: the Docker image and ``scripts/test.sh`` install). Missing ones are skipped, so a machine
#: without them still draws, in the ``captcha`` package's own font.
SYSTEM_FONTS = tuple(
    f"/usr/share/fonts/truetype/dejavu/{name}.ttf"
    for name in (
        "DejaVuSans",
        "DejaVuSans-Bold",
        "DejaVuSansMono",
        "DejaVuSansMono-Bold",
        "DejaVuSerif",
        "DejaVuSerif-Bold",
    )
)


@dataclass(frozen=True)
class CaptchaStyle:
    """The knobs of one deployment's images (see :class:`otp_service.captcha_render.ImageRenderer`).

    :data:`PUBLIC_STYLE` is the style a library user gets without a secret; the service derives
    its own with :meth:`derive`.
    """

    fonts: tuple[str, ...]
    font_sizes: tuple[int, ...]
    rotate: int
    word_offset_dx: float
    word_space_probability: float
    strokes: int
    stroke_width: int
    speckles: int
    wave_amplitude: tuple[float, float]

    @classmethod
    def derive(cls, secret: bytes, extra_fonts: tuple[str, ...] = ()) -> CaptchaStyle:
        """The style ``secret`` selects, the same in every process that holds the secret.

        :param secret: a key derived from the server secret for this one use.
        :param extra_fonts: the operator's own font files (``OTP_CAPTCHA_FONTS``): fonts an
            attacker does not have are the strongest part of a style.
        """
        seed = hmac.new(secret, b"otp-service captcha style v1", hashlib.sha256).digest()
        rng = random.Random(seed)  # noqa: S311 - a look, not a secret: it must be reproducible
        pool = available_fonts(extra_fonts)
        fonts = tuple(sorted(rng.sample(pool, k=min(len(pool), rng.randint(1, 3)))))
        base = rng.randint(38, 46)
        return cls(
            fonts=fonts,
            font_sizes=(base, base + rng.randint(3, 6), base + rng.randint(7, 10)),
            rotate=rng.randint(12, 28),
            word_offset_dx=round(rng.uniform(0.04, 0.16), 3),
            word_space_probability=round(rng.uniform(0.1, 0.6), 3),
            strokes=rng.randint(1, 2),
            stroke_width=rng.randint(2, 3),
            speckles=rng.randint(30, 80),
            wave_amplitude=(round(rng.uniform(2.0, 4.0), 2), round(rng.uniform(5.0, 6.5), 2)),
        )


def available_fonts(extra_fonts: tuple[str, ...] = ()) -> list[str]:
    """The package's font, the installed :data:`SYSTEM_FONTS`, then the operator's own."""
    system = [path for path in SYSTEM_FONTS if Path(path).is_file()]
    return [*DEFAULT_FONTS, *system, *extra_fonts]


#: The style of the first release, and of a renderer built without a secret.
PUBLIC_STYLE = CaptchaStyle(
    fonts=tuple(DEFAULT_FONTS),
    font_sizes=(44, 50, 54),
    rotate=30,
    word_offset_dx=0.1,
    word_space_probability=0.5,
    strokes=2,
    stroke_width=3,
    speckles=60,
    wave_amplitude=(3.5, 6.0),
)
