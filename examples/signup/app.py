"""The demo host app: a sign-up page whose "create account" needs a verified phone number.

It is an ordinary Flask app that adds otp-service the way any host would: one ``OtpGuard``, set up
in the factory with ``init_app``. The guard mounts the JSON API under ``/otp`` (the page's script
calls it for the captcha, the code and the verification) and protects ``POST /account`` with
``verified_phone``: the form carries the token, which works once.

Run it with ``python -m examples.signup.app`` or ``flask --app examples.signup.app run``; the
code "sent" by the console gateway shows in the server's log (development only).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, Flask, g, render_template, request

from otp_service import OtpError, OtpGuard, OtpService, Settings
from otp_service.api import client_ip
from otp_service.core.phone import mask_phone

PURPOSE = "signup"
API_PREFIX = "/otp"
MAX_NAME_LENGTH = 64


#: What a person reads when the protected page refuses; error codes are for logs and code.
REFUSAL_WORDS = {
    "token_used": "This verification was already used to create an account. "
    "Verify your number again to start over.",
    "token_expired": "Your verification took too long and has expired. Verify your number again.",
    "token_invalid": "We could not confirm that your number was verified. "
    "Verify your number again.",
    "rate_limited": "Too many attempts from your network. Wait a few minutes and try again.",
}
GENERIC_REFUSAL = "Something went wrong on our side. Please try again."


def refused_page(error: OtpError) -> tuple[str, int]:
    """Refusals of the protected pages as an HTML page in words, not the API's problem+json."""
    words = REFUSAL_WORDS.get(error.code, GENERIC_REFUSAL)
    return render_template("refused.html", words=words, code=error.code), error.status


guard = OtpGuard(
    url_prefix=API_PREFIX,
    # The host keeps its own HTML error pages; only the API answers problem+json.
    register_error_handlers=False,
    token_locations=("form", "header"),
    on_refused=refused_page,
)

pages = Blueprint("signup", __name__)


@pages.get("/")
def signup_form() -> str:
    """The form, with its first captcha drawn server-side so the picture is there at first paint
    (a script-made first challenge left a broken image until the script ran)."""
    kind = guard.service.settings.captcha_kind
    wants_image = kind in ("image", "both", "auto")
    challenge = None
    if wants_image:
        try:
            challenge = guard.service.create_captcha(client_ip=client_ip(), purpose=PURPOSE)
        except OtpError:
            # Refused (e.g. this address made too many): the script asks again and says why.
            challenge = None
    return render_template(
        "signup.html",
        api_base=API_PREFIX,
        purpose=PURPOSE,
        challenge=challenge,
        wants_image=wants_image,
        wants_pow=kind in ("pow", "both"),
        audio_pow=guard.service.settings.captcha_audio_pow,
    )


@pages.post("/account")
@guard.rate_limit("ip", "10/minute")
@guard.verified_phone(purpose=PURPOSE, one_time=True)
def create_account() -> str:
    """A real app would create the user here; the number is proven, once."""
    name = request.form.get("name", "").strip()[:MAX_NAME_LENGTH]
    return render_template("welcome.html", name=name, phone=mask_phone(g.verified_phone))


def create_demo_app(settings: Settings | None = None, **components: Any) -> Flask:
    """The demo app.

    :param settings: otp-service settings; from ``OTP_*`` environment variables when omitted.
    :param components: adapters for :class:`OtpService` (``store``, ``gateway``,
        ``captcha_renderer``, ``clock``, ``rng``, ``audit``), e.g. a test's recording gateway.
    """
    app = Flask(__name__)
    service = OtpService(settings or Settings.from_env(), **components)
    guard.init_app(app, service=service)
    app.register_blueprint(pages)
    return app


#: The factory name ``flask --app examples.signup.app run`` looks for.
create_app = create_demo_app


if __name__ == "__main__":
    create_demo_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
