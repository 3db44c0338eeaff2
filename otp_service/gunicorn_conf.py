"""gunicorn configuration of the sidecar, shipped in the package so every runner uses this file.

Run as ``gunicorn -c python:otp_service.gunicorn_conf "otp_service.app:create_app()"`` (the
Docker image's command, and the test that runs that command outside Docker). Everything comes
from ``OTP_*`` variables read through :class:`~otp_service.settings.Settings`, so a bad value
fails here, in the master, with a message naming the variable; ``GUNICORN_CMD_ARGS`` still
overrides any gunicorn setting (e.g. ``--threads 8``).

- Workers: ``OTP_WORKERS`` (or ``WEB_CONCURRENCY``) unless ``--workers`` is given, threaded
  (``gthread``): a send may wait seconds on the SMS provider, and threads keep other requests
  moving meanwhile. The multi-worker checks judge the count gunicorn will actually run.
- Shutdown: ``SIGTERM`` stops accepting, lets in-flight requests finish for
  ``OTP_GRACEFUL_TIMEOUT`` seconds, then exits.
- Proxies: gunicorn believes forwarded headers from exactly ``OTP_TRUSTED_PROXIES`` (the same
  CIDRs the app trusts for ``X-Forwarded-For``); empty means nobody.
- Logs: every line on stdout/stderr is one JSON object: access lines (never the query string,
  and the token segment of ``/callbacks/huawei/<token>/…`` redacted: provider callbacks carry
  their secret there), audit events and application logs.
- Metrics: with several workers ``PROMETHEUS_MULTIPROC_DIR`` is required; it is emptied at start
  and a dead worker's live values are released (``child_exit``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger
from prometheus_client import multiprocess

from otp_service.audit import FIELDS_ATTRIBUTE, JsonLineFormatter
from otp_service.errors import ConfigurationError
from otp_service.log_redaction import redact_tokens
from otp_service.metrics import MULTIPROC_ENV
from otp_service.settings import Settings

#: Threads per worker; tune with ``GUNICORN_CMD_ARGS="--threads N"``.
THREADS = 4


def sidecar_settings(environ: Mapping[str, str]) -> Settings:
    """Settings for the sidecar: ``WEB_CONCURRENCY`` stands in for an unset ``OTP_WORKERS``."""
    values = dict(environ)
    if not values.get("OTP_WORKERS") and values.get("WEB_CONCURRENCY"):
        values["OTP_WORKERS"] = values["WEB_CONCURRENCY"]
    return Settings.from_env(values)


def startup_problems(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """Why this configuration must not serve with several workers (each names its variable).

    Each worker is a process of its own: without a shared secret, one worker's tokens fail in
    another; without Redis, codes and limits live in one worker only; without the multiprocess
    directory, ``/metrics`` shows whichever worker answers the scrape.
    """
    if settings.workers < 2:
        return []
    problems = []
    if not environ.get("OTP_SECRET_KEY"):
        problems.append("OTP_SECRET_KEY: several workers need one shared secret key")
    if settings.redis_url is None or settings.redis_url.startswith("memory:"):
        problems.append("OTP_REDIS_URL: several workers need a shared store (Redis)")
    if not environ.get(MULTIPROC_ENV):
        problems.append(
            f"{MULTIPROC_ENV}: several workers need a metrics directory; set it to a path every "
            "worker can write, ideally on a tmpfs (the image uses /tmp/otp-metrics); it is "
            "created if missing and emptied at each start, so give it to nothing else"
        )
    return problems


def forwarded_allow_networks(trusted_proxies: tuple[str, ...]) -> str:
    """``OTP_TRUSTED_PROXIES`` in the strict form gunicorn parses (host bits cleared)."""
    return ",".join(str(ipaddress.ip_network(cidr, strict=False)) for cidr in trusted_proxies)


def prepare_multiprocess_dir(path: str) -> None:
    """Create the metrics directory and drop a previous run's files (they would be summed in)."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


class JsonAccessLogger(Logger):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn's logger with access lines as JSON fields instead of Apache's format."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not getattr(self, "access_log_enabled", True):
            return
        status = str(resp.status).split(None, 1)[0]
        headers = {name.lower(): value for name, value in resp.headers}
        fields = {
            "event": "access",
            "method": environ.get("REQUEST_METHOD"),
            # The path only (provider callbacks may carry their secret in the query string),
            # with the token segment of a path-form callback URL redacted.
            "path": redact_tokens(str(environ.get("PATH_INFO") or "")),
            "status": int(status) if status.isdigit() else status,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "remote_addr": environ.get("REMOTE_ADDR"),
            "request_id": headers.get("x-request-id"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        self.access_log.info(
            "%s %s %s", fields["method"], fields["path"], status, extra={FIELDS_ATTRIBUTE: fields}
        )


def on_starting(server: Any) -> None:
    """In the master, before any worker: refuse unsafe multi-worker setups, reset metrics.

    The worker count judged is the one gunicorn will run (``server.cfg.workers``): the
    command line's ``--workers`` (as ``otp-service serve`` passes) or ``GUNICORN_CMD_ARGS``
    override ``OTP_WORKERS`` / ``WEB_CONCURRENCY``, which only set this module's default.
    """
    running = dataclasses.replace(_settings, workers=int(server.cfg.workers))
    problems = startup_problems(running, os.environ)
    if problems:
        sys.exit("configuration error: " + "; ".join(problems))
    multiproc_dir = os.environ.get(MULTIPROC_ENV)
    if multiproc_dir:
        prepare_multiprocess_dir(multiproc_dir)


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: let its live values go, keep its counters (they stay in the sums)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _load() -> Settings:
    try:
        return sidecar_settings(os.environ)
    except ConfigurationError as exc:
        sys.exit(f"configuration error: {exc.detail}")


_settings = _load()

bind = [_settings.bind]
workers = _settings.workers
worker_class = "gthread"
threads = THREADS
#: Each worker builds its own app (and Redis pool) after the fork.
preload_app = False
graceful_timeout = _settings.graceful_timeout
#: A worker silent this long is killed; a send waits at most OTP_HUAWEI_TIMEOUT on the provider
#: (one total deadline, its retry included), so this leaves ample room above that.
timeout = max(30, int(_settings.huawei_timeout * 2) + 10)
keepalive = 5
forwarded_allow_ips = forwarded_allow_networks(_settings.trusted_proxies)
#: No gunicornc control socket: the container is managed by signals, and it needs a writable home.
control_socket_disable = True
if Path("/dev/shm").is_dir():  # noqa: S108 - tmpfs for worker heartbeats, not a temp file
    worker_tmp_dir = "/dev/shm"  # noqa: S108
accesslog = "-"
errorlog = "-"
logger_class = JsonAccessLogger
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonLineFormatter}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        },
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        },
    },
    "root": {"level": "INFO", "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
    },
}
