"""Drawing captcha challenges as PNG images and WAV audio, over the ``captcha`` package.

The package draws rotated, warped, overlapping glyphs with some dots and one arc; that alone is
read by off-the-shelf OCR about one time in ten (``bench/captcha_ocr.py``). :class:`ImageRenderer`
adds what breaks Tesseract's segmentation while a person still reads the text at a glance: dark
text only (contrast stays high for people), wavy strokes in the text colour that join the
glyphs, more and finer dots, and a gentle sine warp of the whole image. Fonts, sizes, rotation,
spacing, stroke count and noise come from a :class:`~otp_service.captcha_style.CaptchaStyle`,
which the service derives from its secret so that each deployment looks different from the
public style an attacker can train on. The audio variant is the
package's own: each character spoken with random speed and volume over babble made from reversed
voices.

Rendering an image takes a few milliseconds; audio takes about a quarter of a second, so the
service renders audio only when someone asks for it and caches the result.
"""

from __future__ import annotations

import math
import random
from io import BytesIO
from typing import Protocol

from captcha.audio import AudioCaptcha
from captcha.image import ColorTuple, ImageCaptcha
from PIL import Image, ImageDraw, ImageFilter

from otp_service.captcha_style import PUBLIC_STYLE, CaptchaStyle

#: Luminance band of the text colour (0-255): dark on a light background, never black.
TEXT_LUMA = (40, 90)


class CaptchaRenderer(Protocol):
    """Turns a challenge's text into a PNG image and a WAV recording."""

    def render_image(self, text: str) -> bytes: ...

    def render_audio(self, text: str) -> bytes: ...


class _HardenedCaptcha(ImageCaptcha):
    """The package's glyph drawing, with noise that joins glyphs and a whole-image warp."""

    # The package pastes each glyph with its *luminance* as the mask, so dark text comes out
    # faint. Scaling the mask to our darkest text colour (see ``_text_color``) makes every glyph
    # opaque while keeping its anti-aliased edges.
    lookup_table = [min(255, i * 255 // TEXT_LUMA[0]) for i in range(256)]

    def __init__(self, width: int, height: int, rng: random.Random, style: CaptchaStyle) -> None:
        super().__init__(
            width=width, height=height, fonts=list(style.fonts), font_sizes=style.font_sizes
        )
        self._rng = rng
        self._style = style
        # The package reads these as class attributes; an instance's own values win. Less
        # overlap between neighbours than the package's 0.25: overlapping glyphs cost people
        # more than they cost OCR, which the strokes below defeat instead.
        self.word_offset_dx = style.word_offset_dx
        self.word_space_probability = style.word_space_probability
        self.character_rotate = (-style.rotate, style.rotate)

    def generate_image(
        self,
        chars: str,
        bg_color: ColorTuple | None = None,
        fg_color: ColorTuple | None = None,
    ) -> Image.Image:
        rng = self._rng
        background: ColorTuple = bg_color or (
            rng.randint(232, 255),
            rng.randint(232, 255),
            rng.randint(232, 255),
        )
        color = fg_color or self._text_color()
        image = self.create_captcha_image(chars, color, background)
        self._speckle(image, color)
        for _ in range(self._style.strokes):
            self._stroke(image, color, width=self._style.stroke_width)
        # A cut in the background colour: people close the gap without noticing, while an
        # attacker's opening filter (which erases the dark strokes) widens it and splits glyphs.
        self._stroke(image, background, width=1)
        image = self._wave(image, background)
        return image.filter(ImageFilter.SMOOTH)

    def _text_color(self) -> tuple[int, int, int, int]:
        """A random colour dark enough to read well on the light background."""
        low, high = TEXT_LUMA
        while True:
            red, green, blue = (self._rng.randint(0, 170) for _ in range(3))
            if low <= (red * 299 + green * 587 + blue * 114) // 1000 <= high:
                return red, green, blue, 255

    def _speckle(self, image: Image.Image, color: tuple[int, ...]) -> None:
        draw = ImageDraw.Draw(image)
        width, height = image.size
        for _ in range(self._style.speckles):
            x, y = self._rng.randrange(width), self._rng.randrange(height)
            draw.line(((x, y), (x - 1, y - 1)), fill=color, width=2)

    def _stroke(self, image: Image.Image, color: tuple[int, ...], width: int) -> None:
        """A wavy line across the text band, almost as thick as a glyph's strokes.

        Thinner lines are erased by a morphological opening, the first thing an attacker tries.
        """
        size_x, height = image.size
        rng = self._rng
        middle = height * rng.uniform(0.35, 0.65)
        amplitude = height * rng.uniform(0.08, 0.18)
        period = size_x * rng.uniform(0.5, 1.2)
        phase = rng.uniform(0, 2 * math.pi)
        start, end = rng.randint(0, size_x // 6), rng.randint(size_x * 5 // 6, size_x)
        points = [
            (x, middle + amplitude * math.sin(2 * math.pi * x / period + phase))
            for x in range(start, end + 1, 4)
        ]
        ImageDraw.Draw(image).line(points, fill=color, width=width, joint="curve")

    def _wave(self, image: Image.Image, background: ColorTuple) -> Image.Image:
        """Shift columns up and down along a sine: bends the baseline OCR relies on."""
        width, height = image.size
        rng = self._rng
        amplitude = rng.uniform(*self._style.wave_amplitude)
        period = rng.uniform(width * 0.4, width * 0.8)
        phase = rng.uniform(0, 2 * math.pi)
        step = 10
        mesh = []
        for left in range(0, width, step):
            right = min(left + step, width)
            dy0 = amplitude * math.sin(2 * math.pi * left / period + phase)
            dy1 = amplitude * math.sin(2 * math.pi * right / period + phase)
            box = (left, 0, right, height)
            quad = (left, dy0, left, height + dy0, right, height + dy1, right, dy1)
            mesh.append((box, quad))
        return image.transform(
            image.size,
            Image.Transform.MESH,
            mesh,
            Image.Resampling.BILINEAR,
            fillcolor=background,
        )


class ImageRenderer:
    """PNG challenges: the ``captcha`` package's glyphs, hardened against OCR.

    :param width: pixels; 200 x 70 fits five characters at a size phones show well.
    :param height: pixels.
    :param rng: source of the distortions (the system's CSPRNG unless a test seeds one).
    :param style: the deployment's look (:meth:`CaptchaStyle.derive`); the public style if
        omitted, which anyone can train a reader on.
    """

    def __init__(
        self,
        width: int = 200,
        height: int = 70,
        rng: random.Random | None = None,
        style: CaptchaStyle = PUBLIC_STYLE,
    ) -> None:
        self.style = style
        self._images = _HardenedCaptcha(width, height, rng or random.SystemRandom(), style)

    def render_image(self, text: str) -> bytes:
        out = BytesIO()
        self._images.generate_image(text).save(out, format="PNG")
        return out.getvalue()


class AudioRenderer:
    """WAV challenges (8 kHz, 8-bit mono) from the ``captcha`` package's bundled voices."""

    def __init__(self) -> None:
        self._audio = AudioCaptcha()

    def render_audio(self, text: str) -> bytes:
        return bytes(self._audio.generate(text))


class DefaultRenderer:
    """The service's default: :class:`ImageRenderer` and :class:`AudioRenderer` together."""

    def __init__(
        self, image: ImageRenderer | None = None, audio: AudioRenderer | None = None
    ) -> None:
        self.image = image or ImageRenderer()
        self.audio = audio or AudioRenderer()

    def render_image(self, text: str) -> bytes:
        return self.image.render_image(text)

    def render_audio(self, text: str) -> bytes:
        return self.audio.render_audio(text)
