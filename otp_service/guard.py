"""``OtpGuard``: the Flask extension that lends a host app our checks.

It follows Flask's extension conventions: ``OtpGuard(app)`` or ``guard.init_app(app)`` (one guard
object may serve several apps), per-app state in ``app.extensions``, settings from the host's
``app.config`` (``OTP_*`` keys), and no reference to an app kept on the guard — everything at
request time goes through ``current_app``.

It mounts the HTTP API under a prefix of the host (``/otp/send-code`` …) and makes decorators for
the host's own routes; each one also accepts a :class:`~flask.Blueprint` to protect all its views:

- :meth:`OtpGuard.captcha_required` — the request carries a fresh, correct captcha answer;
- :meth:`OtpGuard.rate_limit` — our atomic moving-window limits on any route;
- :meth:`OtpGuard.verified_phone` — the request carries a valid verification token; the number is
  then ``g.verified_phone`` and the claim ``g.otp_claim``.

Refusals are the API's problem responses, or whatever the host's ``on_refused`` hook renders.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar, overload

from flask import Blueprint, Flask, Response, current_app, g, make_response, request
from flask.typing import ResponseReturnValue

from otp_service.api import bp as api_blueprint
from otp_service.api import client_ip
from otp_service.audit import attach_audit_log
from otp_service.core.policy import parse_windows, subnet_of
from otp_service.core.purpose import validate_purpose
from otp_service.errors import ConfigurationError, InvalidRequest, OtpError, TokenInvalid
from otp_service.problems import problem_response, register_problem_handlers
from otp_service.responses import install_request_ids
from otp_service.service import OtpService
from otp_service.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

#: ``app.extensions`` key of the app's :class:`OtpService` (the API blueprint reads it there).
SERVICE_KEY = "otp_service"
#: ``app.extensions`` key of the guard that initialised the app.
GUARD_KEY = "otp_guard"
TOKEN_LOCATIONS = ("header", "form", "cookie")
LIMIT_AXES = ("ip", "subnet", "global")

#: Renders a refusal in the host's own way (an HTML page, a redirect …).
RefusalHandler = Callable[[OtpError], ResponseReturnValue]
#: A custom rate-limit key: who the request is counted for; ``None`` exempts the request.
KeyFunction = Callable[[], object]
#: One check, given the scope name of what it protects; raises an :class:`OtpError` to refuse.
Check = Callable[[str], None]


def get_service() -> OtpService:
    """The :class:`OtpService` of the current app.

    :raises RuntimeError: no guard (or ``create_app``) set this app up.
    """
    service = current_app.extensions.get(SERVICE_KEY)
    if not isinstance(service, OtpService):
        raise RuntimeError("otp-service is not set up on this app: call OtpGuard.init_app(app)")
    return service


class Protection:
    """A decorator made by :class:`OtpGuard`, for a view function or a whole Blueprint."""

    def __init__(self, guard: OtpGuard, check: Check, scope: str | None = None) -> None:
        self._guard = guard
        self._check = check
        self._scope = scope

    @overload
    def __call__(self, target: Blueprint) -> Blueprint: ...

    @overload
    def __call__(self, target: Callable[P, R]) -> Callable[P, R | Response]: ...

    def __call__(self, target: Blueprint | Callable[P, R]) -> Blueprint | Callable[P, R | Response]:
        if isinstance(target, Blueprint):
            scope = self._scope or f"blueprint.{target.name}"
            target.before_request(functools.partial(self._guard._run, self._check, scope))
            return target
        view = target
        view_scope = self._scope or f"{view.__module__}.{view.__qualname__}"

        @functools.wraps(view)
        def protected(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            refusal = self._guard._run(self._check, view_scope)
            if refusal is not None:
                return refusal
            return view(*args, **kwargs)

        return protected


class OtpGuard:
    """Flask extension: the OTP service for a host app, its API under a prefix, and decorators.

    :param app: initialise this app now (or call :meth:`init_app` later, once per app).
    :param service: one ready :class:`OtpService` for every app this guard sets up.
    :param settings: a :class:`Settings` used as is, or a mapping of field overrides
        (``{"captcha_mode": "off"}``) that win over the app's ``OTP_*`` config, which wins over
        the defaults.
    :param url_prefix: where the HTTP API is mounted; ``None`` mounts nothing.
    :param register_error_handlers: render HTTP errors of the whole app as problem responses
        too (our own errors always are, wherever they are raised).
    :param token_locations: where :meth:`verified_phone` looks for the token, in order:
        ``header`` (``Authorization: Bearer …``), ``form``, ``cookie``.
    :param cookie_name: the cookie holding a token.
    :param form_field: the form field holding a token.
    :param on_refused: renders refusals of the decorators instead of a problem response.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        service: OtpService | None = None,
        settings: Settings | Mapping[str, Any] | None = None,
        url_prefix: str | None = "/otp",
        register_error_handlers: bool = True,
        token_locations: Sequence[str] = TOKEN_LOCATIONS,
        cookie_name: str = "otp_token",
        form_field: str = "otp_token",
        on_refused: RefusalHandler | None = None,
    ) -> None:
        if service is not None and settings is not None:
            raise TypeError("pass either service= or settings=, not both")
        unknown = [where for where in token_locations if where not in TOKEN_LOCATIONS]
        if unknown or not token_locations:
            raise ValueError(f"token_locations: choose from {', '.join(TOKEN_LOCATIONS)}")
        self._service = service
        self._settings = settings
        self.url_prefix = url_prefix
        self.register_error_handlers = register_error_handlers
        self.token_locations = tuple(token_locations)
        self.cookie_name = cookie_name
        self.form_field = form_field
        self.on_refused = on_refused
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, service: OtpService | None = None) -> None:
        """Set ``app`` up: its service, the API blueprint, and problem rendering.

        :param service: this app's own service (e.g. with injected adapters); otherwise the
            guard's, or one built from the settings.
        :raises RuntimeError: the app is already set up.
        :raises ConfigurationError: the app's ``OTP_*`` config is invalid.
        """
        if SERVICE_KEY in app.extensions or GUARD_KEY in app.extensions:
            raise RuntimeError("otp-service is already set up on this app")
        app.extensions[SERVICE_KEY] = service or self._service or OtpService(self.settings_for(app))
        app.extensions[GUARD_KEY] = self
        destination = app.extensions[SERVICE_KEY].settings.audit_log
        if destination != "off":
            # Opt-in only: a host that set nothing keeps the logging it configured.
            attach_audit_log(destination)
        if self.url_prefix is not None:
            app.register_blueprint(api_blueprint, url_prefix=self.url_prefix)
            # The mounted API answers as the sidecar does: same bodies, same request ids.
            install_request_ids(app, blueprint=api_blueprint.name)
        if self.register_error_handlers:
            register_problem_handlers(app, unexpected=False)
        else:
            app.register_error_handler(OtpError, problem_response)

    def settings_for(self, app: Flask) -> Settings:
        """The settings this guard gives ``app``: explicit > ``app.config`` ``OTP_*`` > default."""
        if isinstance(self._settings, Settings):
            return self._settings
        return Settings.from_mapping(app.config, **dict(self._settings or {}))

    @property
    def service(self) -> OtpService:
        """The current app's :class:`OtpService`, for host views that call it directly."""
        return get_service()

    def refused_handler(self, handler: RefusalHandler) -> RefusalHandler:
        """Decorator form of ``on_refused``: ``@guard.refused_handler``."""
        self.on_refused = handler
        return handler

    # -- decorators ---------------------------------------------------------------------------

    @overload
    def captcha_required(self, target: Blueprint, /) -> Blueprint: ...

    @overload
    def captcha_required(self, target: Callable[P, R], /) -> Callable[P, R | Response]: ...

    @overload
    def captcha_required(
        self,
        target: None = None,
        /,
        *,
        id_field: str = ...,
        answer_field: str = ...,
        purpose: str | None = ...,
    ) -> Protection: ...

    def captcha_required(
        self,
        target: Blueprint | Callable[P, R] | None = None,
        /,
        *,
        id_field: str = "captcha_id",
        answer_field: str = "captcha_answer",
        purpose: str | None = None,
    ) -> Blueprint | Callable[P, R | Response] | Protection:
        """Require a fresh, correct captcha answer (``captcha_id`` + ``captcha_answer`` in the JSON
        body or the form), a proof of work (``altcha``), or both, as ``OTP_CAPTCHA_KIND`` says.
        The challenge is consumed either way: one answer per challenge. An image challenge must
        have been made (``POST /captcha``) for ``purpose``: the default purpose if omitted.

        Usable bare (``@guard.captcha_required``) or called (``@guard.captcha_required()``).
        Refuses with ``captcha_required`` or ``captcha_invalid``.

        :raises ConfigurationError: a malformed ``purpose``, at decoration time.
        """
        if purpose is not None:
            try:
                validate_purpose(purpose)
            except InvalidRequest as exc:
                raise ConfigurationError(f"captcha_required: {exc.detail}") from None

        def check(scope: str) -> None:
            fields = _request_fields()
            get_service().check_captcha(
                fields.get(id_field),
                fields.get(answer_field),
                altcha=fields.get("altcha"),
                client_ip=client_ip(),
                purpose=purpose,
            )

        protection = Protection(self, check)
        return protection if target is None else protection(target)

    def rate_limit(
        self,
        key: str | KeyFunction,
        limit: str,
        *,
        name: str | None = None,
        scope: str | None = None,
    ) -> Protection:
        """Count each request against ``limit`` (``limits`` notation, e.g. ``"5/minute;50/day"``).

        :param key: ``"ip"`` (the client address), ``"subnet"`` (its /24 or /64), ``"global"``
            (everyone together), or a function returning the subject (``None`` exempts).
        :param name: the ``limit`` reported in the 429 body; the axis name by default, ``custom``
            for a key function.
        :param scope: share counters between routes by giving them the same scope; by default
            each view (or Blueprint) counts on its own.
        :raises ConfigurationError: an unknown axis or a malformed limit, at decoration time.
        """
        if isinstance(key, str) and key not in LIMIT_AXES:
            raise ConfigurationError(f"rate_limit: axis must be one of {', '.join(LIMIT_AXES)}")
        try:
            parse_windows(limit)
        except ValueError:
            raise ConfigurationError(f"rate_limit: malformed limit {limit!r}") from None
        axis = name or (key if isinstance(key, str) else "custom")

        def check(scope: str) -> None:
            subject, hashed = _limit_subject(key)
            if subject is None:
                return
            get_service().hit_limits(
                axis, subject, limit, scope=scope, hash_subject=hashed, client_ip=client_ip()
            )

        return Protection(self, check, scope)

    def verified_phone(self, *, purpose: str | None = None, one_time: bool = True) -> Protection:
        """Require a valid verification token; the view then finds the number in
        ``g.verified_phone`` and the whole :class:`~otp_service.VerifiedClaim` in ``g.otp_claim``.

        :param purpose: the purpose the token must have been issued for (``None``: any).
        :param one_time: consume the token, so a replay is refused with ``token_used``. It is
            consumed before the view runs: a view that fails needs a new verification.
        Refuses with ``token_invalid``, ``token_expired`` or ``token_used`` (401).
        """
        if purpose is not None:
            try:
                validate_purpose(purpose)
            except InvalidRequest as exc:
                raise ConfigurationError(f"verified_phone: {exc.detail}") from None

        def check(scope: str) -> None:
            token = self._find_token()
            if token is None:
                raise TokenInvalid(f"A verification token is required: {self._token_hint()}.")
            claim = get_service().check_token(token, purpose=purpose, consume=one_time)
            g.verified_phone = claim.phone
            g.otp_claim = claim

        return Protection(self, check)

    # -- request time -------------------------------------------------------------------------

    def _find_token(self) -> str | None:
        for where in self.token_locations:
            if where == "header":
                auth = request.authorization
                token = auth.token if auth is not None and auth.type == "bearer" else None
            elif where == "form":
                token = request.form.get(self.form_field)
            else:
                token = request.cookies.get(self.cookie_name)
            if token:
                return token
        return None

    def _token_hint(self) -> str:
        """Where a client puts the token, in words: the 401 is where integrators look first."""
        places = {
            "header": "an 'Authorization: Bearer <token>' header",
            "form": f"the '{self.form_field}' form field",
            "cookie": f"the '{self.cookie_name}' cookie",
        }
        return "send the token from /verify as " + " or ".join(
            places[where] for where in self.token_locations
        )

    def _run(self, check: Check, scope: str) -> Response | None:
        try:
            check(scope)
        except OtpError as exc:
            return self._refuse(exc)
        return None

    def _refuse(self, error: OtpError) -> Response:
        if self.on_refused is None:
            return problem_response(error)
        rendered = self.on_refused(error)
        if isinstance(rendered, str | bytes | dict | list):
            # A bare body would go out as 200; a refusal keeps its status.
            rendered = (rendered, error.status)
        response = make_response(rendered)
        retry_after = error.extras.get("retry_after")
        if isinstance(retry_after, int) and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = str(retry_after)
        return response


def _request_fields() -> dict[str, str]:
    """String fields of the JSON object or the form, whichever the request carries."""
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
    return {k: v for k, v in request.form.items()}


def _limit_subject(key: str | KeyFunction) -> tuple[str | None, bool]:
    """Who this request counts for, and whether that must be stored hashed."""
    if key == "global":
        return "all", False
    if callable(key):
        subject = key()
        # A host's key function may return an id as a number: count it by its text.
        return (None if subject is None else str(subject)), True
    address = client_ip() or "unknown"
    if key == "subnet":
        try:
            return subnet_of(address), False
        except ValueError:
            return address, False
    return address, False
