"""Leaving the group at once as a static member (KIP-345 "remove members").

Why this exists: a static member's `close()` sends no LeaveGroup (librdkafka, like the Java
client, keeps the membership so a restart within the session timeout is no rebalance), and
confluent-kafka's AdminClient has no `remove_members_from_consumer_group`. An instance scaled
in for good would hold its partitions for the whole session timeout. So, when asked to
(`leave_group_on_shutdown`, `App.stop(leave_group=True)`), the engine sends the one request
the Java admin client sends: LeaveGroup v3 naming this member's id and group.instance.id, to
the group coordinator found with FindCoordinator v1 (both still served by Kafka 4.x).

Invariant: the request names this incarnation's member id, so it can never remove a newer
incarnation that already took the instance id over (the coordinator answers
FENCED_INSTANCE_ID for it, which is fine: someone else holds the membership now).

Limits: plaintext listeners only (no TLS/SASL handshake here); with any other
`security.protocol` the engine logs that the instance stays a member until its session times
out, which is the same as not asking.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

FIND_COORDINATOR, FIND_COORDINATOR_V = 10, 1
LEAVE_GROUP, LEAVE_GROUP_V = 13, 3
_RETRY_CODES = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR
_GONE_CODES = {25, 82}  # UNKNOWN_MEMBER_ID: already gone; FENCED_INSTANCE_ID: taken over
RETRY_BACKOFF_S = 0.2


class LeaveGroupError(Exception):
    """The member could not be removed before the deadline (it stays until its session ends)."""


@dataclass(frozen=True)
class LeaveResult:
    error_code: int  # 0: removed; 25/82: it was gone or taken over already

    @property
    def removed(self) -> bool:
        return self.error_code == 0


def leave_group(bootstrap_servers: str, group_id: str, member_id: str, instance_id: str,
                timeout_s: float = 10.0, client_id: str = "kstream-leave") -> LeaveResult:
    """Remove the static member (`member_id`, `instance_id`) from `group_id` now."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            host, port = _find_coordinator(bootstrap_servers, group_id, deadline, client_id)
            code = _leave(host, port, group_id, member_id, instance_id, deadline, client_id)
        except (OSError, _Retry) as exc:
            last = exc
            time.sleep(RETRY_BACKOFF_S)
            continue
        if code in _RETRY_CODES:
            last = _Retry(f"coordinator error {code}")
            time.sleep(RETRY_BACKOFF_S)
            continue
        if code != 0 and code not in _GONE_CODES:
            raise LeaveGroupError(f"LeaveGroup for {instance_id} in {group_id}: error {code}")
        return LeaveResult(code)
    raise LeaveGroupError(f"LeaveGroup for {instance_id} in {group_id} did not succeed within "
                          f"{timeout_s:.0f}s: {last}")


class _Retry(Exception):
    pass


def _find_coordinator(bootstrap_servers: str, group_id: str, deadline: float,
                      client_id: str) -> tuple[str, int]:
    last: Exception | None = None
    for host, port in _addresses(bootstrap_servers):
        try:
            body = _string(group_id) + struct.pack(">b", 0)  # key type 0: group
            r = _Reader(_request(host, port, FIND_COORDINATOR, FIND_COORDINATOR_V, body,
                                 deadline, client_id))
            r.int32()  # throttle
            code = r.int16()
            r.nullable_string()  # error message
            r.int32()  # node id
            coord_host, coord_port = r.string() or "", r.int32()
        except OSError as exc:
            last = exc
            continue
        if code != 0:
            raise _Retry(f"FindCoordinator error {code}")
        return coord_host, coord_port
    raise _Retry(f"no bootstrap server answered FindCoordinator: {last}")


def _leave(host: str, port: int, group_id: str, member_id: str, instance_id: str,
           deadline: float, client_id: str) -> int:
    body = (_string(group_id) + struct.pack(">i", 1) + _string(member_id)
            + _string(instance_id))
    r = _Reader(_request(host, port, LEAVE_GROUP, LEAVE_GROUP_V, body, deadline, client_id))
    r.int32()  # throttle
    code = r.int16()
    if code != 0:
        return code
    for _ in range(r.int32()):
        r.string()
        r.nullable_string()
        member_code = r.int16()
        if member_code != 0:
            return member_code
    return 0


def _addresses(bootstrap_servers: str) -> list[tuple[str, int]]:
    out = []
    for item in bootstrap_servers.split(","):
        item = item.strip().split("://", 1)[-1]
        host, _, port = item.rpartition(":")
        if host and port.isdigit():
            out.append((host.strip("[]"), int(port)))
    return out


def _request(host: str, port: int, api_key: int, version: int, body: bytes, deadline: float,
             client_id: str) -> bytes:
    """One request on a fresh connection; the response body (after the correlation id)."""
    timeout = max(0.1, deadline - time.monotonic())
    header = struct.pack(">hhi", api_key, version, 1) + _string(client_id)
    payload = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _read(sock, 4))[0]
        data = _read(sock, size)
    return data[4:]  # response header v0: correlation id only


def _read(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def _take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def int16(self) -> int:
        return self._take(">h")

    def int32(self) -> int:
        return self._take(">i")

    def nullable_string(self) -> str | None:
        n = self.int16()
        if n < 0:
            return None
        value = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return value

    def string(self) -> str | None:
        return self.nullable_string()
