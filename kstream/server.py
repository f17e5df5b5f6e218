"""The query server: HTTP/JSON interactive queries, health, readiness, metrics, status page.

Runs in the app process when `query_port` is set (threads of a stdlib ThreadingHTTPServer; the
engine loop is not involved: reads go through kstream.queries). Every answer is JSON except
`/` (the status page) and `/metrics` (Prometheus text).

* `GET /stores/<store>/keys/<key>`: key-value store `{"value": …}` (404 when the key has
  none); window store: its windows (`?from=&to=`, ms bounds on the start); session store: its
  sessions (`?earliest_end=&latest_start=`).
* `GET /stores/<store>/range?from=&to=&prefix=&limit=`: key-value entries in a key range (or
  with a prefix); `GET /stores/<store>/all?limit=`: every entry (windows, sessions);
  `GET /stores/<store>/windows?from=&to=&limit=`: windows of every key starting in [from, to];
  `GET /stores/<store>/count`: approximate entries.
* `GET /metadata`: live instances, their endpoints and partitions; with `?store=&key=`: the
  key's owner and partition.
* `GET /health`: 200 while the engine runs (liveness), 503 once it failed or stopped.
  `GET /ready`: 200 when partitions are assigned, restored and processing, else 503 and why.
* `GET /metrics`: Prometheus metrics. `GET /` and `GET /status.json`: the status page and the
  JSON it refreshes from.

**Any instance answers any key**: a key owned by another instance is forwarded to that
instance's `application_server` (one hop; a forwarded request is never forwarded again).
Scans (`range`, `all`, `windows`, `count`) gather every instance's partitions (`?scope=local`:
this instance's only) and answer only when every partition of the store answered.

**Not available** (rebalancing, restoring, an owner that does not answer) is `503` with
`Retry-After: 1` and `{"error": …, "retry": true}`: never a wrong or empty answer.

**Keys in URLs** are percent-encoded strings, decoded with the store's key serde in mind:
StringSerde keys as they are; Int32/Int64 keys as decimal integers; Float keys as numbers;
UUID keys in their text form; BytesSerde keys as the string's UTF-8 bytes; JSON and the default
ordered (tuple) keys as JSON when the text parses as JSON (`42`, `"a b"`, `["card",7]` — a JSON
array is a tuple key), else as the plain string. Other serdes get the string.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import orjson

from kstream._serde_defaults import effective
from kstream.errors import (
    NotOwnedHereError,
    StoreNotAvailableError,
    UnknownStoreError,
)
from kstream.queries import KeyValueView, SessionView, StoreView, WindowView
from serdes import (
    BytesSerde,
    Float32Serde,
    Float64Serde,
    Int32Serde,
    Int64Serde,
    JsonSerde,
    Serde,
    StringSerde,
    TupleKeySerde,
    UUIDSerde,
    Windowed,
)

if TYPE_CHECKING:
    from kstream.app import App

log = logging.getLogger("kstream.server")

FORWARDED_HEADER = "X-KStream-Forwarded-By"
FORWARD_TIMEOUT_S = 5.0
RETRY_AFTER_S = 1
DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000

__all__ = ["QueryServer", "parse_key"]


class BadRequest(ValueError):
    """A malformed request (400)."""


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "replace")
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    return str(obj)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


def json_response(status: int, obj: Any) -> Response:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}
    return Response(status, dumps(obj), headers=headers)


def unavailable(exc: StoreNotAvailableError | str) -> Response:
    reason = exc.reason if isinstance(exc, StoreNotAvailableError) else "unavailable"
    return json_response(503, {"error": str(exc), "reason": reason, "retry": True})


def parse_key(serde: Serde, text: str) -> Any:
    """A URL key (already percent-decoded) as the store's key serde expects it; see the
    module docstring. Raises BadRequest when the text cannot be such a key."""
    serde = effective(serde)
    try:
        if isinstance(serde, StringSerde):
            return text
        if isinstance(serde, (Int32Serde, Int64Serde)):
            return int(text)
        if isinstance(serde, (Float32Serde, Float64Serde)):
            return float(text)
        if isinstance(serde, UUIDSerde):
            return uuid.UUID(text)
        if isinstance(serde, BytesSerde):
            return text.encode()
    except ValueError as exc:
        raise BadRequest(f"key {text!r} does not fit the store's {type(serde).__name__}: "
                         f"{exc}") from exc
    if isinstance(serde, (JsonSerde, TupleKeySerde)):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        if isinstance(serde, TupleKeySerde) and isinstance(value, list):
            return _tuple(value)
        return value
    return text


def _tuple(value: Any) -> Any:
    return tuple(_tuple(v) for v in value) if isinstance(value, list) else value


def _window_json(window: Windowed, value: Any) -> dict[str, Any]:
    return {"key": window.key, "start": window.start, "end": window.end, "value": value}


class QueryService:
    """Answers requests (no HTTP here: a path, query parameters and whether it was
    forwarded in, a Response out), so the logic is testable without sockets."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.own_endpoint = app.config.advertised_server
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def handle(self, path: str, query: str, forwarded: bool) -> Response:
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")] if \
            path.strip("/") else []
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        try:
            return self._route(parts, params, forwarded, path, query)
        except BadRequest as exc:
            return json_response(400, {"error": str(exc)})
        except UnknownStoreError as exc:
            return json_response(404, {"error": str(exc)})
        except NotOwnedHereError as exc:  # a scan reached a partition that moved meanwhile
            return unavailable(exc)
        except StoreNotAvailableError as exc:
            return unavailable(exc)

    def _route(self, parts: list[str], params: dict[str, str], forwarded: bool, path: str,
               query: str) -> Response:
        if not parts:
            from kstream.status_page import render_status_page

            return Response(200, render_status_page(self.app).encode(),
                            "text/html; charset=utf-8")
        head = parts[0]
        if parts == ["health"]:
            return self.health()
        if parts == ["ready"]:
            ready, reasons = self.app.readiness()
            return json_response(200 if ready else 503, {"ready": ready, "reasons": reasons})
        if parts == ["metrics"]:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            return Response(200, generate_latest(self.app.metrics_registry()),
                            CONTENT_TYPE_LATEST)
        if parts == ["status.json"]:
            from kstream.status_page import status

            return json_response(200, status(self.app))
        if parts == ["metadata"]:
            return self.metadata(params)
        if head == "stores" and len(parts) == 1:
            return json_response(200, {"stores": sorted(self.app.topology.stores)})
        if head == "stores" and len(parts) == 4 and parts[2] == "keys":
            return self.key(parts[1], parts[3], params, forwarded, path, query)
        if head == "stores" and len(parts) == 3 and parts[2] in ("range", "all", "windows",
                                                                   "count"):
            return self.scan(parts[1], parts[2], params, forwarded, path, query)
        return json_response(404, {"error": f"no such endpoint: /{'/'.join(parts)}"})

    # -- health --------------------------------------------------------------------------------
    def health(self) -> Response:
        from kstream.runtime.lifecycle import EngineState

        engine = self.app._engine
        state = engine.life.state if engine is not None else EngineState.CREATED
        alive = state not in (EngineState.FAILED, EngineState.STOPPED)
        return json_response(200 if alive else 503,
                             {"status": "ok" if alive else "down", "state": state.value})

    # -- metadata ------------------------------------------------------------------------------
    def metadata(self, params: dict[str, str]) -> Response:
        if "store" in params or "key" in params:
            if "store" not in params or "key" not in params:
                raise BadRequest("key metadata needs both ?store= and ?key=")
            view = self.app.store(params["store"])
            key = parse_key(view.key_serde, params["key"])
            return json_response(200, self.app.metadata_for_key(params["store"], key).to_json())
        instances = self.app.all_metadata()
        stores = {}
        for name in sorted(self.app.topology.stores):
            tasks = self.app._queryable()
            sub = tasks.sub_of_store(name)
            stores[name] = {"partitions": tasks.store_partitions(name),
                            "topics": sub.source_topics}
        return json_response(200, {"application_id": self.app.config.application_id,
                                   "self": self.own_endpoint,
                                   "instances": [i.to_json() for i in instances],
                                   "stores": stores})

    # -- one key -------------------------------------------------------------------------------
    def key(self, store: str, key_text: str, params: dict[str, str], forwarded: bool,
            path: str, query: str) -> Response:
        view = self.app.store(store)
        key = parse_key(view.key_serde, key_text)
        try:
            return self._local_key(view, store, key, params)
        except NotOwnedHereError as exc:
            if forwarded:
                return unavailable(StoreNotAvailableError(
                    f"{exc} (this request was forwarded here by another instance whose view "
                    "of the group is newer or older than ours)", reason="moved"))
        meta = self.app.metadata_for_key(store, key)
        if meta.endpoint is None:
            return unavailable(f"the owner of partition {meta.partition} advertises no "
                               "application_server; retry")
        if meta.endpoint == self.own_endpoint:
            return unavailable(f"partition {meta.partition} is assigned here but not "
                               "readable yet; retry")
        return self.forward(meta.endpoint, path, query)

    def _local_key(self, view: StoreView, store: str, key: Any,
                   params: dict[str, str]) -> Response:
        answer: dict[str, Any] = {"store": store, "key": key, "endpoint": self.own_endpoint}
        if isinstance(view, KeyValueView):
            value = view.get(key)
            answer.update(value=value, partition=view.partition_for_key(key))
            return json_response(200 if value is not None else 404, answer)
        if isinstance(view, WindowView):
            windows = view.fetch(key, _int(params, "from", -(1 << 62)),
                                 _int(params, "to", 1 << 62))
            answer.update(windows=[_window_json(w, v) for w, v in windows],
                          partition=view.partition_for_key(key))
            return json_response(200, answer)
        assert isinstance(view, SessionView)
        sessions = view.find_sessions(key, _int(params, "earliest_end", -(1 << 62)),
                                      _int(params, "latest_start", 1 << 62))
        answer.update(sessions=[_window_json(w, v) for w, v in sessions],
                      partition=view.partition_for_key(key))
        return json_response(200, answer)

    def forward(self, endpoint: str, path: str, query: str) -> Response:
        url = f"http://{endpoint}{path}" + (f"?{query}" if query else "")
        request = urllib.request.Request(url, headers={FORWARDED_HEADER: self.own_endpoint
                                                       or "unknown"})
        try:
            with self._opener.open(request, timeout=FORWARD_TIMEOUT_S) as resp:
                return Response(resp.status, resp.read(),
                                resp.headers.get("Content-Type", "application/json"))
        except urllib.error.HTTPError as err:
            headers = {"Retry-After": str(RETRY_AFTER_S)} if err.code == 503 else {}
            return Response(err.code, err.read(),
                            err.headers.get("Content-Type", "application/json"), headers)
        except (urllib.error.URLError, OSError) as err:
            return unavailable(f"owner {endpoint} did not answer ({err}); retry")

    # -- scans ---------------------------------------------------------------------------------
    def scan(self, store: str, kind: str, params: dict[str, str], forwarded: bool,
             path: str, query: str) -> Response:
        view = self.app.store(store)
        limit = min(_int(params, "limit", DEFAULT_LIMIT), MAX_LIMIT)
        parts: dict[int, Any] = self._local_scan(view, kind, params, limit)
        if forwarded or params.get("scope") == "local":
            return json_response(200, {"store": store, "partitions": parts})
        tasks = self.app._queryable()
        wanted = set(range(tasks.store_partitions(store)))
        topics = set(tasks.sub_of_store(store).source_topics)
        local_query = urllib.parse.urlencode({**params, "scope": "local"})
        for instance in self.app.all_metadata():
            if not any(t in topics for t, _ in instance.partitions):
                continue
            if instance.endpoint is not None and instance.endpoint == self.own_endpoint:
                continue
            if instance.endpoint is None:
                return unavailable(f"instance {instance.client_id} owns partitions of {store} "
                                   "but advertises no application_server; retry")
            answer = self.forward(instance.endpoint, path, local_query)
            if answer.status != 200:
                return Response(answer.status, answer.body, answer.content_type,
                                answer.headers)
            for p, items in orjson.loads(answer.body)["partitions"].items():
                parts[int(p)] = items
        missing = sorted(wanted - set(parts))
        if missing:
            return unavailable(StoreNotAvailableError(
                f"partitions {missing} of {store} did not answer (rebalancing?); retry",
                reason="rebalancing"))
        if kind == "count":
            return json_response(200, {"store": store, "count": sum(parts.values()),
                                       "partitions": parts})
        items = [item for p in sorted(parts) for item in parts[p]][:limit]
        return json_response(200, {"store": store, "count": len(items), "items": items,
                                   "partitions": sorted(parts)})

    def _local_scan(self, view: StoreView, kind: str, params: dict[str, str],
                    limit: int) -> dict[int, Any]:
        if kind == "count":
            return dict(view.approximate_counts())
        if isinstance(view, KeyValueView):
            if kind == "windows":
                raise BadRequest(f"store {view.name!r} is a key-value store: use range or all")
            if kind == "range" and "prefix" in params:
                prefix = parse_key(view.key_serde, params["prefix"])
                scan: Callable[[Any], Any] = lambda kv: kv.prefix_scan(prefix)  # noqa: E731
            elif kind == "range":
                lo = parse_key(view.key_serde, params["from"]) if "from" in params else None
                hi = parse_key(view.key_serde, params["to"]) if "to" in params else None
                scan = lambda kv: kv.range(lo, hi)  # noqa: E731
            else:
                scan = lambda kv: kv.all()  # noqa: E731
            return {p: [{"key": k, "value": v} for k, v in entries]
                    for p, entries in view.scan_partitions(scan, limit).items()}
        if kind == "range":
            raise BadRequest(f"store {view.name!r} holds windows: use windows or all")
        if isinstance(view, WindowView):
            lo, hi = _int(params, "from", -(1 << 62)), _int(params, "to", 1 << 62)
            return {p: [_window_json(w, v) for w, v in windows] for p, windows
                    in view.fetch_all_by_partition(lo, hi, limit).items()}
        if kind == "windows":
            raise BadRequest(f"store {view.name!r} is a session store: use all or keys/<key>")
        assert isinstance(view, SessionView)
        return {p: [_window_json(w, v) for w, v in sessions]
                for p, sessions in view.all_by_partition(limit).items()}


def _int(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"?{name}= must be an integer (milliseconds or a count), "
                         f"got {raw!r}") from None


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path, _, query = self.path.partition("?")
        began = time.perf_counter()
        try:
            response = self.server.service.handle(path, query,
                                                  self.headers.get(FORWARDED_HEADER) is not None)
        except Exception as exc:  # noqa: BLE001 - a query must never take the server down
            log.exception("event=query_failed path=%s", self.path)
            response = json_response(500, {"error": f"{type(exc).__name__}: {exc}"})
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)
        log.debug("event=query path=%s status=%d ms=%.1f", self.path, response.status,
                  (time.perf_counter() - began) * 1000)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's API
        return None  # requests are logged at debug level above, not to stderr


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], service: QueryService) -> None:
        self.service = service
        super().__init__(address, _Handler)


class QueryServer:
    """`QueryServer(app, port, host="")`: the HTTP server of one app instance, in its own
    thread; `start()`, then `shutdown()` and `server_close()` (App.run does both)."""

    def __init__(self, app: App, port: int, host: str = "") -> None:
        self._httpd = _HTTPServer((host, port), QueryService(app))
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name="kstream-query-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> QueryServer:
        self._thread.start()
        log.info("event=query_server port=%d", self.port)
        return self

    def shutdown(self) -> None:
        self._httpd.shutdown()

    def server_close(self) -> None:
        self._httpd.server_close()
