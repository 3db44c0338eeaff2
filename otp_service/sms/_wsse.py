"""Huawei's X-WSSE UsernameToken headers, as pure functions of (key, secret, nonce, time).

Kept apart from the HTTP code so the digest can be checked against a hand-computed vector and
so nothing here reads the clock or draws randomness: both arrive as arguments.

The digest is Base64 of the SHA-256 of ``Nonce + Created + AppSecret``. Huawei's own demos
disagree on what is Base64-encoded: the Python demo and the authentication page's sample
(sms_05_0046) encode the *lowercase hex string* (88 characters), the Go, Node.js and Java demos
the 32 raw bytes (44 characters). We send the hex form, the one the page's sample shows
(reference §2.1); a digest of either length can be correct.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time

#: The fixed ``Authorization`` value of the X-WSSE scheme.
AUTHORIZATION = 'WSSE realm="SDP",profile="UsernameToken",type="Appkey"'
#: ``Created`` format; always applied to a UTC time (Huawei's own sample wrongly uses local time).
CREATED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: Nonce: 1-128 digits and ASCII letters (reference §2.1).
NONCE_PATTERN = re.compile(r"[0-9A-Za-z]{1,128}")
# A quote, backslash or comma in the App Key would break the header's quoted-string syntax.
_USERNAME_PATTERN = re.compile(r'[^",\\\s]+')


def format_created(now: float) -> str:
    """``now`` (Unix seconds) as the UTC ``Created`` timestamp, e.g. ``2018-02-12T15:30:20Z``."""
    return time.strftime(CREATED_FORMAT, time.gmtime(now))


def password_digest(nonce: str, created: str, app_secret: str) -> str:
    """``Base64(hex(SHA-256(Nonce + Created + AppSecret)))`` — no separators; the hex form."""
    hex_digest = hashlib.sha256((nonce + created + app_secret).encode("utf-8")).hexdigest()
    return base64.b64encode(hex_digest.encode("ascii")).decode("ascii")


def valid_app_key(app_key: str) -> bool:
    """Whether ``app_key`` can stand in the header's quoted ``Username`` as documented."""
    return _USERNAME_PATTERN.fullmatch(app_key) is not None


def wsse_headers(app_key: str, app_secret: str, *, nonce: str, now: float) -> dict[str, str]:
    """The ``Authorization`` and ``X-WSSE`` headers for one request.

    :param nonce: fresh per request (1-128 alphanumerics); the caller owns its randomness.
    :param now: the request's time in Unix seconds; the caller owns the clock.
    :raises ValueError: a nonce or App Key that cannot appear in the header as documented.
    """
    if not NONCE_PATTERN.fullmatch(nonce):
        raise ValueError("WSSE nonce must be 1-128 ASCII letters and digits")
    if not valid_app_key(app_key):
        raise ValueError("WSSE App Key must not be empty or contain quotes, commas or spaces")
    created = format_created(now)
    digest = password_digest(nonce, created, app_secret)
    token = (
        f'UsernameToken Username="{app_key}",PasswordDigest="{digest}",'
        f'Nonce="{nonce}",Created="{created}"'
    )
    return {"Authorization": AUTHORIZATION, "X-WSSE": token}
