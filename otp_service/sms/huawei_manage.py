"""Template and signature state from Huawei's MSGSMS management API (reference §2.4, §6).

A send with a deactivated template (审核通过-去激活) or a signature waiting for activation fails
on every message, and the send API says so only one refused message at a time. The management
API states it up front, so ``check-provider`` can print the fix and ``/readyz`` can take the
service out of rotation before users meet the failure.

Authentication is an IAM user token: ``POST {iam}/v3/auth/tokens`` with a password identity
scoped to the project; the token comes back in the ``X-Subject-Token`` header and is sent as
``X-Auth-Token``. It lives 24 hours; :class:`IamTokenSource` reuses it until five minutes before
its ``expires_at``. Reads use the SDK's list operations filtered by the configured template id and
signature name (``GET /v2/{project_id}/msgsms/templates?template_id=…``,
``…/signatures?signature_name=…``), whose answers are ``{"results": [...], "total": n}``.

Errors of this API family are ``{"error_code": "MSGSMS.xxxx", "error_msg": …}`` (or ``APIGW.*``
from the gateway in front of it); :data:`MANAGEMENT_CODES` says what the documented ones mean.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import requests

from otp_service.settings import Settings
from otp_service.sms._http import Answer, deadline_after, fetch, pooled_session

#: Reuse a token until this many seconds before it expires (clocks drift; calls take time).
TOKEN_MARGIN = 300.0

#: What the documented MSGSMS.* codes mean (reference §3.3); moved here from the send path,
#: which never sees them.
MANAGEMENT_CODES: dict[str, str] = {
    "MSGSMS.0001": "internal server error at Huawei; try again later",
    "MSGSMS.0002": "invalid parameter",
    "MSGSMS.0003": "request unauthorized: the IAM user lacks MSGSMS ReadOnlyAccess (or FullAccess)",
    "MSGSMS.0005": "the signature does not exist",
    "MSGSMS.0009": "the template does not exist",
    "MSGSMS.0033": "signature not found",
    "MSGSMS.0076": "the message application does not exist",
}


class ManagementError(Exception):
    """The management API could not answer: network, credentials, or an error code."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class TemplateState:
    template_id: str
    flow_status: str
    universal: bool
    #: The management API's own key for the template (its variables are read by it).
    key: str = ""


@dataclass(frozen=True, slots=True)
class TemplateVariable:
    index: int
    kind: str
    length: int


@dataclass(frozen=True, slots=True)
class SignatureState:
    name: str
    status: str


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the operator should know; ``blocking`` ones stop every send."""

    subject: str
    state: str
    fix: str
    blocking: bool


#: Template ``flow_status`` (reference addenda) → (blocking, what to do).
_TEMPLATE_FIXES: dict[str, tuple[bool, str]] = {
    "Adopted": (False, "approved and active"),
    "Adopted_inactive": (
        True,
        "approved but deactivated (审核通过-去激活), usually after a carrier rule change; it "
        "cannot be restored: apply for a new template and set OTP_HUAWEI_TEMPLATE_ID",
    ),
    "Reviewing": (True, "under review (about 2 working hours); sends fail until it is approved"),
    "Pending": (True, "waiting to be submitted or reviewed; submit it in the console"),
    "SignReviewing": (True, "waiting for its signature's review"),
    "Reject": (True, "rejected: read the review opinion in the console, edit and resubmit"),
    "Disable": (True, "disabled: enable it in the console or apply for a new template"),
}

#: Signature ``status`` (reference §6.1) → (blocking, what to do).
_SIGNATURE_FIXES: dict[str, tuple[bool, str]] = {
    "REVIEW_PROCESSING_COMPLETED": (False, "approved and fully usable"),
    "REVIEW_PASSED": (False, "usable, but qualification documents are missing: carriers may block"),
    "REVIEW_PASSED_QUALIFICATION_PROCESSING": (False, "usable; qualification under review"),
    "REVIEW_PASSED_REAL_NAME_REGISTRATING": (False, "usable; real-name filing in progress"),
    "REVIEW_PASSED_REAL_NAME_REGISTRATE_FAIL": (
        False,
        "usable, but real-name filing failed: carriers may block; refile in the console",
    ),
    "PENDING_REVIEW": (True, "awaiting review (about 5 working days)"),
    "PROCESSING": (True, "review passed, being set up"),
    "REVIEW_NOT_PASS": (True, "rejected: read the review opinion, fix and resubmit"),
    "TO_BE_ACTIVATED": (
        True,
        "to be activated (待激活), e.g. after the account was in arrears: top the account up, "
        "then activate the signature in the console; an operator reviews the activation",
    ),
    "PENDING_ACTIVATE": (True, "activation under review"),
    "PENDING_QUALIFICATION_REVIEW": (True, "qualification under review: it cannot send"),
    "REAL_NAME_REGISTRATING": (True, "real-name filing with the carriers in progress"),
}


def assess(
    template: TemplateState,
    signature: SignatureState | None,
    *,
    signature_configured: bool,
    variables: list[TemplateVariable] | None = None,
    code_length: int | None = None,
) -> list[Finding]:
    """What the states mean for sending, each with its fix in words. Pure: tested on its own.

    :param variables: the template's declared variables; with ``code_length``, a template that
        cannot carry the code (the platform answers E200028 on every send) is blocking.
    """
    blocking, fix = _TEMPLATE_FIXES.get(
        template.flow_status, (True, "an undocumented state: check the template in the console")
    )
    subject = f"template {template.template_id}"
    findings = [Finding(subject, template.flow_status, fix, blocking)]
    if variables is not None and code_length is not None:
        findings += _variable_findings(subject, variables, code_length)
    if template.universal and not signature_configured:
        findings.append(
            Finding(
                f"template {template.template_id}",
                "universal (通用)",
                "a universal template needs a signature on every send: set OTP_HUAWEI_SIGNATURE",
                True,
            )
        )
    if signature is not None:
        blocking, fix = _SIGNATURE_FIXES.get(
            signature.status, (True, "an undocumented state: check the signature in the console")
        )
        findings.append(Finding(f"signature {signature.name}", signature.status, fix, blocking))
    return findings


def _variable_findings(
    subject: str, variables: list[TemplateVariable], code_length: int
) -> list[Finding]:
    """The service fills exactly one variable, the code: it must exist and be long enough."""
    if len(variables) != 1:
        return [
            Finding(
                subject,
                f"{len(variables)} variables",
                "the service fills one variable, the code; every send would fail with E200028: "
                "use a template with exactly one variable",
                True,
            )
        ]
    declared = variables[0].length
    if declared < code_length:
        return [
            Finding(
                subject,
                f"variable length {declared}",
                f"the code has {code_length} digits (OTP_CODE_LENGTH) but the template's variable "
                f"takes at most {declared}; every send would fail with E200028: lower "
                "OTP_CODE_LENGTH or apply for a template with a longer variable",
                True,
            )
        ]
    return []


class IamTokenSource:
    """An IAM user token, fetched once and reused until shortly before it expires.

    :param now: wall-clock seconds (injected: expiry is judged against the token's own
        ``expires_at``, a wall-clock time).
    """

    def __init__(
        self,
        *,
        endpoint: str,
        domain: str,
        user: str,
        password: str,
        project_id: str,
        session: requests.Session,
        timeout: float,
        now: Callable[[], float],
    ) -> None:
        self._url = endpoint.rstrip("/") + "/v3/auth/tokens"
        self._body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": user, "password": password, "domain": {"name": domain}}
                    },
                },
                "scope": {"project": {"id": project_id}},
            }
        }
        self._session = session
        self._timeout = timeout
        self._now = now
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def token(self) -> str:
        """A live token. :raises ManagementError: IAM refused or could not be reached."""
        with self._lock:
            if self._token is None or self._now() >= self._expires - TOKEN_MARGIN:
                self._token, self._expires = self._fetch()
            return self._token

    def _fetch(self) -> tuple[str, float]:
        try:
            response = fetch(
                self._session,
                "POST",
                self._url,
                deadline=deadline_after(self._timeout),
                json=self._body,
            )
        except requests.RequestException as exc:
            raise ManagementError(f"IAM unreachable: {type(exc).__name__}") from None
        if response.status not in (200, 201):
            raise ManagementError(
                f"IAM refused the token request (HTTP {response.status}): check "
                "OTP_HUAWEI_IAM_DOMAIN, OTP_HUAWEI_IAM_USER, OTP_HUAWEI_IAM_PASSWORD and "
                "OTP_HUAWEI_PROJECT_ID",
                code=_error_code(response),
            )
        token = response.headers.get("X-Subject-Token")
        expires = _expires_at(response)
        if not token or expires is None:
            raise ManagementError("IAM answered without X-Subject-Token or token.expires_at")
        return token, expires


class HuaweiManagement:
    """Reads the configured template's and signature's state."""

    def __init__(
        self,
        *,
        endpoint: str,
        project_id: str,
        tokens: IamTokenSource,
        session: requests.Session,
        timeout: float,
    ) -> None:
        self._base = f"{endpoint.rstrip('/')}/v2/{project_id}/msgsms"
        self._tokens = tokens
        self._session = session
        self._timeout = timeout

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        now: Callable[[], float],
        session: requests.Session | None = None,
    ) -> HuaweiManagement | None:
        """The client the settings describe, or ``None`` when the IAM settings are absent
        (the management API is optional: sending never needs it)."""
        iam = (
            settings.huawei_iam_endpoint,
            settings.huawei_iam_domain,
            settings.huawei_iam_user,
            settings.huawei_iam_password,
            settings.huawei_project_id,
        )
        endpoint, domain, user, password, project_id = iam
        if not (endpoint and domain and user and password and project_id):
            return None
        session = session or pooled_session(pool_maxsize=4)
        tokens = IamTokenSource(
            endpoint=endpoint,
            domain=domain,
            user=user,
            password=password,
            project_id=project_id,
            session=session,
            timeout=settings.huawei_timeout,
            now=now,
        )
        return cls(
            endpoint=settings.huawei_management_endpoint,
            project_id=project_id,
            tokens=tokens,
            session=session,
            timeout=settings.huawei_timeout,
        )

    def template(self, template_id: str) -> TemplateState:
        """:raises ManagementError: not found, refused, or unreachable."""
        found = self._first("templates", {"template_id": template_id}, "the template")
        return TemplateState(
            template_id=str(found.get("template_id", template_id)),
            flow_status=str(found.get("flow_status", "")),
            universal=str(found.get("universal_template", "0")) == "1",
            key=str(found.get("id", "")),
        )

    def variables(self, template: TemplateState) -> list[TemplateVariable]:
        """The template's declared variables (``GET templates/{id}/varilable``, Huawei's
        spelling), in index order. :raises ManagementError: refused or unreachable."""
        rows = self._results(f"templates/{template.key}/varilable", {}, "the template's variables")
        variables = [
            TemplateVariable(
                index=_int(row.get("variable_index")),
                kind=str(row.get("variable_type", "")),
                length=_int(row.get("variable_length")),
            )
            for row in rows
        ]
        return sorted(variables, key=lambda variable: variable.index)

    def signature(self, name: str) -> SignatureState:
        """:raises ManagementError: not found, refused, or unreachable."""
        found = self._first("signatures", {"signature_name": name}, "the signature")
        return SignatureState(
            name=str(found.get("signature_name", name)), status=str(found.get("status", ""))
        )

    def _first(self, resource: str, query: dict[str, str], what: str) -> dict[str, object]:
        results = self._results(resource, query, what)
        if not results:
            raise ManagementError(f"{what} is not in this project ({query})")
        return results[0]

    def _results(self, resource: str, query: dict[str, str], what: str) -> list[dict[str, object]]:
        # The token is fetched first, under its own deadline: each HTTP call gets the full
        # timeout, as in the send path, and none can take longer.
        token = self._tokens.token()
        try:
            response = fetch(
                self._session,
                "GET",
                f"{self._base}/{resource}",
                deadline=deadline_after(self._timeout),
                params=query,
                headers={"X-Auth-Token": token},
            )
        except requests.RequestException as exc:
            raise ManagementError(f"management API unreachable: {type(exc).__name__}") from None
        if response.status != 200:
            code = _error_code(response)
            meaning = MANAGEMENT_CODES.get(code or "", "")
            raise ManagementError(
                f"management API refused reading {what} (HTTP {response.status}"
                f"{', ' + code if code else ''}{': ' + meaning if meaning else ''})",
                code=code,
            )
        results = _json(response).get("results")
        if not isinstance(results, list):
            raise ManagementError(f"the management API answered {what} without results")
        return [row for row in results if isinstance(row, dict)]


def _json(response: Answer) -> dict[str, object]:
    try:
        body = json.loads(response.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _error_code(response: Answer) -> str | None:
    code = _json(response).get("error_code")
    return code if isinstance(code, str) else None


def _expires_at(response: Answer) -> float | None:
    token = _json(response).get("token")
    expires = token.get("expires_at") if isinstance(token, dict) else None
    if not isinstance(expires, str):
        return None
    try:
        return datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
