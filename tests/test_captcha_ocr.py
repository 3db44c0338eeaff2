"""OCR attack on fresh captcha images (Tesseract): the solve rate must stay at or under 5 %.

Slow (Tesseract runs several pipelines per image). Needs Debian's ``tesseract-ocr``: without it
the test fails in CI (``CI=true``) and skips elsewhere. ``bench/captcha_ocr.py`` runs the same
attack over 200+ challenges and reports per pipeline.
"""

from __future__ import annotations

import os

import pytest

from bench.captcha_ocr import MAX_SOLVE_RATE, run_attack, tesseract_binary

CHALLENGES = 60


@pytest.fixture
def tesseract() -> None:
    if tesseract_binary() is not None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            "tesseract is not installed: `apt-get install -y tesseract-ocr` (scripts/test.sh)",
            pytrace=False,
        )
    pytest.skip("tesseract is not installed (apt-get install -y tesseract-ocr)")


@pytest.mark.slow
# Hundreds of tesseract runs: ~30 s on a quiet 2-core machine, several times that on a busy one.
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("tesseract")
def test_ocr_solves_at_most_five_percent_of_fresh_challenges() -> None:
    report = run_attack(CHALLENGES)
    summary = report.as_dict()
    assert report.best_single_guess_rate <= MAX_SOLVE_RATE, summary
