"""Redis store: each operation is one Lua script (one round trip), loaded once per client.

``redis.RedisError`` is caught only here and becomes :class:`StoreUnavailable`, so the service
fails closed: no limit can be checked, so no SMS is sent. Retries are off: a script whose reply
was lost may have run, and running it again would count a hit or an attempt twice.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import cache
from importlib import resources
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisClusterException
from redis.retry import Retry

from otp_service.errors import StoreUnavailable
from otp_service.store.base import (
    Admission,
    CodeCheck,
    CodeRecord,
    CodeStatus,
    Denial,
    LimitRule,
    Tally,
    WindowUsage,
)

log = logging.getLogger(__name__)

SOCKET_TIMEOUT = 2.0
CONNECT_TIMEOUT = 1.0
# Connections per process (per node for a cluster). A thread that finds them all busy waits up
# to SOCKET_TIMEOUT for one instead of failing at once: a burst of threads (gthread workers, a
# library user's thread pool) then queues for Redis, which serves one command at a time anyway.
MAX_CONNECTIONS = 64


def _script_source(name: str) -> str:
    lua = resources.files("otp_service.store") / "lua"
    return (lua / "common.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _encode(value: bytes, expires_at: float) -> bytes:
    return str(_ms(expires_at)).encode() + b"|" + value


def _decode(raw: bytes | None, now: float) -> bytes | None:
    if raw is None:
        return None
    expires, _, value = raw.partition(b"|")
    return value if int(expires) > _ms(now) else None


def _limit_spec(limits: Sequence[LimitRule]) -> str:
    """Every limit's ``amount window_ms shadow`` in one argument (see ``lua/common.lua``).

    redis-py packs each argument on its own, at a cost that grows with the command: one string
    for nine windows is far cheaper to send than 27 numbers.
    """
    return ",".join(f"{rule.amount} {_ms(rule.window)} {int(rule.shadow)}" for rule in limits)


def _pack(*args: str | int | bytes | memoryview) -> bytes:
    """One command in the Redis protocol (an array of bulk strings), as redis-py packs it.

    redis-py's packer runs its type checks and a bytes join per argument; a script call with
    fifty keys spent more CPU packing than the rest of the call.
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = bytes(arg) if isinstance(arg, bytes | memoryview) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


@cache
def _connection_args(pool_type: type[redis.ConnectionPool]) -> tuple[str, ...]:
    """What ``get_connection`` takes: a command name before redis-py 5.3, nothing since (where
    passing one is deprecated)."""
    parameter = inspect.signature(pool_type.get_connection).parameters.get("command_name")
    required = parameter is not None and parameter.default is inspect.Parameter.empty
    return ("EVALSHA",) if required else ()


def _text_mapping(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A ``CONFIG GET`` answer as text (the client may or may not decode responses)."""
    return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _shadowed(indexes: Sequence[Any], names: Sequence[str]) -> tuple[str, ...]:
    return tuple(names[int(i) - 1] for i in indexes)


class RedisStore:
    """Store on a Redis server (or anything speaking its protocol and Lua)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._admit = client.register_script(_script_source("admit"))
        self._verify = client.register_script(_script_source("verify_code"))
        self._put_new = client.register_script(_script_source("put_new"))
        self._tally = client.register_script(_script_source("tally"))
        self._give_back = client.register_script(_script_source("give_back"))

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=SOCKET_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
        )
        # from_pool: the client owns the pool, so close() disconnects it.
        return cls(redis.Redis.from_pool(pool))

    @contextmanager
    def _guard(self, operation: str) -> Iterator[None]:
        try:
            yield
        except (redis.RedisError, RedisClusterException) as exc:
            log.error("store operation %s failed: %s", operation, type(exc).__name__)
            raise StoreUnavailable("The state store is unreachable.") from exc

    def _run(self, operation: str, call: Callable[[], Any]) -> Any:
        with self._guard(operation):
            return call()

    def _eval(self, operation: str, script: Script, keys: list[Any], args: list[Any]) -> Any:
        """Run ``script`` on one pooled connection, loading it first if the server lost it.

        The hot path talks to the connection itself: redis-py's per-command wrapper (a retry
        loop that never retries here, observability hooks, event dispatch) costs about a third
        of the client's CPU per call. The connection still checks its health and disconnects
        itself on a socket error or timeout, so the next call reconnects.
        """
        with self._guard(operation):
            pool = self.client.connection_pool
            conn = pool.get_connection(*_connection_args(type(pool)))

            def call(*command: str | int | bytes | memoryview) -> Any:
                conn.send_packed_command([_pack(*command)])  # type: ignore[no-untyped-call]
                return conn.read_response()

            try:
                try:
                    return call("EVALSHA", script.sha, len(keys), *keys, *args)
                except NoScriptError:
                    script.sha = call("SCRIPT", "LOAD", script.script).decode()
                    return call("EVALSHA", script.sha, len(keys), *keys, *args)
            finally:
                pool.release(conn)

    def ping(self) -> None:
        self._run("ping", self.client.ping)

    def persistence_warning(self) -> str | None:
        """Why a restart would lose state (no AOF and no RDB snapshots), or ``None``.

        ``CONFIG`` is often renamed, disabled or denied by ACL on managed servers; then we
        cannot tell, and say nothing rather than warn about what may be fine.
        """
        try:
            servers = self._persistence_config()
        except redis.ResponseError:
            return None
        for name, config in servers:
            if config.get("appendonly", "").lower() == "no" and not config.get("save", "").strip():
                where = f"Redis {name}" if name else "Redis"
                return (
                    f'{where} keeps nothing on disk (appendonly no, save ""): a restart lifts '
                    "every opt-out, allow-list entry and pumping block and lets used one-time "
                    "tokens work again; turn on AOF (appendonly yes), see docs/operations.md"
                )
        return None

    def _persistence_config(self) -> list[tuple[str, dict[str, str]]]:
        """``appendonly`` and ``save`` of each server holding data (one here)."""

        def read() -> dict[str, str]:
            config: dict[str, str] = {}
            for name in ("appendonly", "save"):
                config.update(_text_mapping(self.client.config_get(name)))
            return config

        return [("", self._run_raising_responses("config", read))]

    def _run_raising_responses(self, operation: str, call: Callable[[], Any]) -> Any:
        """As :meth:`_run`, but a command the server refuses (``ResponseError``) is raised as it
        is, for callers that can do without the answer."""
        try:
            return call()
        except redis.ResponseError:
            raise
        except (redis.RedisError, RedisClusterException) as exc:
            log.error("store operation %s failed: %s", operation, type(exc).__name__)
            raise StoreUnavailable("The state store is unreachable.") from exc

    def close(self) -> None:
        self.client.close()

    def give_back(
        self,
        *,
        limits: Sequence[LimitRule],
        token: str,
        admitted_at: float,
        code: CodeRecord | None = None,
    ) -> None:
        keys = [rule.key for rule in limits]
        args: list[Any] = [token, int(code is not None), b""]
        if code is not None:
            keys.append(code.key)
            args[2] = code.digest
        if keys:
            self._eval("give_back", self._give_back, keys, args)

    def admit(
        self,
        *,
        denials: Sequence[Denial],
        limits: Sequence[LimitRule],
        now: float,
        token: str,
        code: CodeRecord | None = None,
    ) -> Admission:
        names = [d.name for d in denials] + [rule.name for rule in limits]
        keys = [d.key for d in denials] + [rule.key for rule in limits]
        args: list[Any] = [
            _ms(now),
            len(denials),
            token,
            int(code is not None),
            _limit_spec(limits),
        ]
        if code is not None:
            keys.append(code.key)
            args += [code.digest, _ms(code.ttl), code.max_attempts, _ms(now + code.ttl)]
        reply = self._eval("admit", self._admit, keys, args)
        refused = int(reply[0])
        if refused:
            return Admission(
                False,
                refused_by=names[refused - 1],
                retry_after=int(reply[1]) / 1000,
                refused_key=keys[refused - 1] if refused > len(denials) else None,
            )
        figures_at = 2 + int(reply[1])
        figures = [int(value) for value in reply[figures_at:]]
        usage = tuple(
            WindowUsage(
                rule,
                figures[3 * i],
                reset_after=figures[3 * i + 1] / 1000,
                retry_after=figures[3 * i + 2] / 1000,
            )
            for i, rule in enumerate(limits)
        )
        return Admission(True, shadowed=_shadowed(reply[2:figures_at], names), usage=usage)

    def window_usage(self, limits: Sequence[LimitRule], *, now: float) -> list[WindowUsage]:
        """One pipelined read of every window's live hits (no script: keys may span slots)."""

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for rule in limits:
                pipe.zrangebyscore(rule.key, f"({_ms(now - rule.window)}", "+inf", withscores=True)
            return pipe.execute()

        replies = self._run("window_usage", read) if limits else []
        return [
            WindowUsage.from_hits(rule, [score / 1000 for _, score in hits], now)
            for rule, hits in zip(limits, replies, strict=True)
        ]

    def put_code(self, key: str, digest: bytes, *, ttl: int, max_attempts: int, now: float) -> None:
        record: list[bytes | str | int] = [
            "d",
            digest,
            "a",
            0,
            "m",
            max_attempts,
            "e",
            _ms(now + ttl),
        ]

        def write() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(key)
            pipe.hset(key, items=record)
            pipe.pexpire(key, _ms(ttl))
            pipe.execute()

        self._run("put_code", write)

    def verify_code(
        self,
        key: str,
        candidates: Sequence[bytes],
        *,
        now: float,
        limits: Sequence[LimitRule] = (),
        token: str = "",
        on_approve: Tally | None = None,
    ) -> CodeCheck:
        increments = on_approve.increments if on_approve is not None else {}
        counter_ttl = max(1, _ms(on_approve.ttl)) if on_approve is not None else 1
        keys = [key] + [rule.key for rule in limits] + list(increments)
        args: list[Any] = [_ms(now), token, len(increments), counter_ttl, _limit_spec(limits)]
        args += [len(candidates), *candidates, *increments.values()]
        reply = self._eval("verify_code", self._verify, keys, args)
        status = CodeStatus(reply[0].decode())
        names = ["code"] + [rule.name for rule in limits]
        if status is CodeStatus.LIMITED:
            return CodeCheck(
                status, refused_by=names[int(reply[1]) - 1], retry_after=int(reply[2]) / 1000
            )
        return CodeCheck(status, attempts_left=int(reply[1]), shadowed=_shadowed(reply[3:], names))

    def put(self, key: str, value: bytes, *, ttl: float, now: float) -> None:
        self._run("put", lambda: self.client.set(key, _encode(value, now + ttl), px=_ms(ttl)))

    def put_new(self, key: str, value: bytes, *, ttl: float, now: float) -> bytes | None:
        encoded = _encode(value, now + ttl)
        reply = self._eval("put_new", self._put_new, [key], [_ms(now), encoded, max(1, _ms(ttl))])
        return _decode(reply, now) if reply else None

    def get(self, key: str, *, now: float) -> bytes | None:
        return _decode(self._run("get", lambda: self.client.get(key)), now)

    def take(self, key: str, *, now: float) -> bytes | None:
        return _decode(self._run("take", lambda: self.client.getdel(key)), now)

    def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        return int(self._run("delete", lambda: self.client.delete(*keys)))

    def tally(
        self, increments: Mapping[str, int], reads: Sequence[str], *, ttl: float, now: float
    ) -> list[int]:
        """One script: atomic, and one reply to parse (a pipeline's replies cost one each)."""
        keys = [*increments, *reads]
        args = [max(1, _ms(ttl)), *increments.values()]
        reply = self._eval("tally", self._tally, keys, args)
        return [int(value) for value in reply.split(b",")] if reads else []

    def keys(self, pattern: str = "*") -> list[str]:
        """Keys matching ``pattern`` (operators' tools, hygiene tests); iterates with SCAN."""
        return [k.decode() for k in self._run("scan", lambda: list(self.client.scan_iter(pattern)))]


CLUSTER_SCHEME = "redis+cluster://"


def _slot(key: str) -> int:
    return int(key_slot(key.encode()))


class ClusterRedisStore(RedisStore):
    """Store on a Redis Cluster (``redis+cluster://host:port``, any node as the seed).

    A script must touch one hash slot. Keys of one number share a hash tag, but a send also
    counts per address, range and globally, and a verify per address: other slots. So
    :meth:`admit` and :meth:`verify_code` run one script per slot, in a fixed order (the slot
    with denials first), each check-and-count atomic on its slot. When a later slot refuses, the
    hits already counted are taken back (ZREM of the request's token). Every window still holds
    at most its amount, because each window is checked and counted atomically in its own slot.
    What weakens is all-or-nothing: between the scripts (or for good, if the process or a node
    dies there) earlier slots hold a hit the request never used, which can only refuse others
    early, never admit too many. A refusal names the rule with the longest wait among the first
    refusing slot's and the windows of the slots not yet run (read, not counted). A send's code
    is stored after every slot admitted it (one more round trip), and an approval's counters in
    other slots are added after it. See docs/cluster.md.
    """

    @classmethod
    def from_url(cls, url: str) -> ClusterRedisStore:
        try:
            client: RedisCluster = RedisCluster.from_url(
                "redis://" + url.removeprefix(CLUSTER_SCHEME),
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=CONNECT_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
                connection_pool_class=redis.BlockingConnectionPool,
                max_connections=MAX_CONNECTIONS,
                timeout=SOCKET_TIMEOUT,
            )
        except (redis.RedisError, RedisClusterException) as exc:
            log.error("store cluster discovery failed: %s", type(exc).__name__)
            raise StoreUnavailable("The state store is unreachable.") from exc
        # RedisCluster serves the same commands and scripts (one slot each); the stubs lack
        # register_script, so it is typed as the client it stands in for.
        return cls(cast("redis.Redis", client))

    def _persistence_config(self) -> list[tuple[str, dict[str, str]]]:
        """``appendonly`` and ``save`` of every primary: each holds a share of the keys."""
        cluster = cast("RedisCluster", self.client)

        def read() -> list[tuple[str, dict[str, str]]]:
            servers: dict[str, dict[str, str]] = {}
            for name in ("appendonly", "save"):
                answers = cast(
                    "Mapping[Any, Any]",
                    cluster.config_get(name, target_nodes=RedisCluster.PRIMARIES),
                )
                if name in map(_text, answers):  # one primary: its answer, not one per node
                    answers = {"": answers}
                for node, answer in answers.items():
                    servers.setdefault(_text(node), {}).update(_text_mapping(answer))
            return sorted(servers.items())

        result: list[tuple[str, dict[str, str]]] = self._run_raising_responses("config", read)
        return result

    def _eval(self, operation: str, script: Script, keys: list[Any], args: list[Any]) -> Any:
        """Through the script object: the cluster client routes it to the keys' node."""
        return self._run(operation, lambda: script(keys=keys, args=args))

    def close(self) -> None:
        """Disconnect every node's pool, the seed nodes' too.

        ``RedisCluster.close`` only calls ``close`` on each node's client, and a client built
        ``from_url`` was handed its pool, so it leaves the pool's sockets open (one per thread
        that used the node).
        """
        cluster = cast("RedisCluster", self.client)
        manager = cluster.nodes_manager
        nodes = [*manager.nodes_cache.values(), *manager.startup_nodes.values()]
        cluster.close()
        for node in nodes:
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()

    def admit(
        self,
        *,
        denials: Sequence[Denial],
        limits: Sequence[LimitRule],
        now: float,
        token: str,
        code: CodeRecord | None = None,
    ) -> Admission:
        groups: dict[int, tuple[list[Denial], list[int]]] = {}
        for denial in denials:
            groups.setdefault(_slot(denial.key), ([], []))[0].append(denial)
        for index, rule in enumerate(limits):
            groups.setdefault(_slot(rule.key), ([], []))[1].append(index)
        slots = set(groups) | ({_slot(code.key)} if code is not None else set())
        if len(slots) <= 1:
            return super().admit(denials=denials, limits=limits, now=now, token=token, code=code)
        counted: list[LimitRule] = []
        usage: dict[int, WindowUsage] = {}
        shadowed: list[str] = []
        pending = list(groups.values())
        for position, (group_denials, indexes) in enumerate(pending):
            rules = [limits[i] for i in indexes]
            try:
                admission = super().admit(denials=group_denials, limits=rules, now=now, token=token)
            except StoreUnavailable:
                self._take_back(counted, token)
                raise
            if not admission.allowed:
                self._take_back(counted, token)
                if admission.refused_by in {d.name for d in group_denials}:
                    return admission
                later = [limits[i] for _, rest in pending[position + 1 :] for i in rest]
                return self._longest_wait(admission, later, now)
            counted += rules
            shadowed += admission.shadowed
            usage.update(zip(indexes, admission.usage, strict=True))
        if code is not None:
            # Stored only once every slot admitted: one more round trip, never a code for a
            # refused send.
            try:
                self.put_code(
                    code.key, code.digest, ttl=code.ttl, max_attempts=code.max_attempts, now=now
                )
            except StoreUnavailable:
                self._take_back(counted, token)
                raise
        order = {rule.name: i for i, rule in reversed(list(enumerate(limits)))}
        return Admission(
            True,
            shadowed=tuple(sorted(shadowed, key=order.__getitem__)),
            usage=tuple(usage[i] for i in range(len(limits))),
        )

    def verify_code(
        self,
        key: str,
        candidates: Sequence[bytes],
        *,
        now: float,
        limits: Sequence[LimitRule] = (),
        token: str = "",
        on_approve: Tally | None = None,
    ) -> CodeCheck:
        slot = _slot(key)
        local = [rule for rule in limits if _slot(rule.key) == slot]
        remote = [rule for rule in limits if _slot(rule.key) != slot]
        increments = on_approve.increments if on_approve is not None else {}
        far = {k: n for k, n in increments.items() if _slot(k) != slot}
        if not remote and not far:
            return super().verify_code(
                key, candidates, now=now, limits=limits, token=token, on_approve=on_approve
            )
        near = (
            Tally({k: n for k, n in increments.items() if k not in far}, on_approve.ttl)
            if on_approve is not None
            else None
        )
        if not remote:
            check = super().verify_code(
                key, candidates, now=now, limits=local, token=token, on_approve=near
            )
            return self._tally_far(check, far, on_approve, now)
        admission = self.admit(denials=(), limits=remote, now=now, token=token)
        if not admission.allowed:
            return CodeCheck(
                CodeStatus.LIMITED,
                refused_by=admission.refused_by,
                retry_after=admission.retry_after,
            )
        try:
            check = super().verify_code(
                key, candidates, now=now, limits=local, token=token, on_approve=near
            )
        except StoreUnavailable:
            self._take_back(remote, token)
            raise
        if check.status is CodeStatus.LIMITED:
            self._take_back(remote, token)
            return check
        check = replace(check, shadowed=check.shadowed + admission.shadowed)
        return self._tally_far(check, far, on_approve, now)

    def tally(
        self, increments: Mapping[str, int], reads: Sequence[str], *, ttl: float, now: float
    ) -> list[int]:
        """A pipeline rather than the script: the counters may live in different slots."""

        def run() -> list[int]:
            # Not a transaction: each INCRBY is atomic on its own, and the keys may span slots.
            pipe = self.client.pipeline(transaction=False)
            for key, amount in increments.items():
                pipe.incrby(key, amount)
                pipe.pexpire(key, max(1, _ms(ttl)))
            for key in reads:
                pipe.get(key)
            replies = pipe.execute()
            return [int(raw or 0) for raw in replies[2 * len(increments) :]]

        return list(self._run("tally", run))

    def _tally_far(
        self, check: CodeCheck, far: Mapping[str, int], on_approve: Tally | None, now: float
    ) -> CodeCheck:
        """Add an approval's counters that live in other slots (after it, not atomically)."""
        if check.status is CodeStatus.APPROVED and far and on_approve is not None:
            try:
                self.tally(far, [], ttl=on_approve.ttl, now=now)
            except StoreUnavailable:
                log.warning("an approval's counters in other slots were not added")
        return check

    def _longest_wait(
        self, refusal: Admission, later: Sequence[LimitRule], now: float
    ) -> Admission:
        """Name the refusing rule with the longest wait, as the one-script path does.

        The slots not yet run are only read (nothing counted), so the figure is advisory.
        """
        enforced = [rule for rule in later if not rule.shadow]
        if not enforced:
            return refusal
        longest = max(self.window_usage(enforced, now=now), key=lambda usage: usage.retry_after)
        if longest.retry_after <= refusal.retry_after:
            return refusal
        return Admission(
            False,
            refused_by=longest.rule.name,
            retry_after=longest.retry_after,
            refused_key=longest.rule.key,
        )

    def _take_back(self, rules: Sequence[LimitRule], token: str) -> None:
        """Remove this request's hits; if that fails they expire with their windows."""
        if not rules:
            return

        def run() -> None:
            pipe = self.client.pipeline(transaction=False)
            for rule in rules:
                pipe.zrem(rule.key, token)
            pipe.execute()

        try:
            self._run("take_back", run)
        except StoreUnavailable:
            log.warning("a refused request's hits stay counted until their windows pass")


def retry_after_seconds(seconds: float) -> int:
    """Whole seconds a client should wait: rounded up, at least one."""
    return max(1, math.ceil(seconds))
