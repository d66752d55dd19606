"""A local stand-in for the WhatsApp Cloud API (Graph ``/messages``) over real HTTP.

Tests, the simulator, benchmarks and ``make demo`` point ``WHATSAPP_API_URL`` at it::

    with FakeGraphAPI() as graph:
        sender = WhatsAppSender(config=graph.config())
        sender.send_text("15551234567", "hi")
        assert graph.sent[0].payload["text"]["body"] == "hi"

It answers like Graph: bearer token check (401, code 190), request validation of every
message kind flowkit sends, with WhatsApp's limits (400, code 100, message naming the
field; docs/whatsapp-limits.md), unknown phone number ids (400, code 100/33), the success
body with a fresh ``wamid``, read receipts with the typing indicator, and media lookup and
download (``GET /{version}/{media-id}``, then its URL, both with the token). Failures and
delays are programmable (:meth:`FakeGraphAPI.fail_next`, :meth:`FakeGraphAPI.delay_next`);
rate limits can be switched on (throughput: code 130429; per recipient "pair" limit:
131056; both with ``Retry-After``), and so can the 24-hour customer service window (code
131047, on a clock tests can set). By default standard library only: a ``ThreadingHTTPServer`` on
127.0.0.1 with a free port, in a daemon thread, speaking HTTP/1.1. ``FakeGraphAPI(tls=True)``
serves the same endpoint over HTTPS with HTTP/2, as Graph does (:mod:`flowkit.testing.graph_tls`;
a child process terminating TLS in front of this server; its ``config()`` and ``env()`` name
the CA to trust). The request validation lives in
:mod:`flowkit.testing.graph_validation`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import secrets
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from flowkit.channels.whatsapp.payloads import DEFAULT_PHONE_NUMBER_ID
from flowkit.channels.whatsapp.sender import DEFAULT_API_VERSION, WhatsAppConfig
from flowkit.testing.graph_tls import PORT_HEADER, VERSION_HEADER, TLSFront
from flowkit.testing.graph_validation import InvalidRequest, validate

DEFAULT_TOKEN = "test-token"
_PATH = re.compile(r"^/(v\d+(?:\.\d+)?)/([^/?]+)/messages/?(?:\?.*)?$")
_MEDIA_PATH = re.compile(r"^/(v\d+(?:\.\d+)?)/(\d+)/?(?:\?.*)?$")
_DOWNLOAD_PATH = re.compile(r"^/download/(\d+)(?:\?.*)?$")
WINDOW_SECONDS = 24 * 3600
_WINDOW_DETAILS = ("Message failed to send because more than 24 hours have passed since the customer last replied "
                   "to this number.")
_DEFAULT_ERRORS: dict[int, tuple[int, str]] = {
    400: (100, "(#100) Invalid parameter"),
    429: (130429, "(#130429) Rate limit hit"),
    500: (1, "An unknown error occurred"),
    502: (1, "An unknown error occurred"),
    503: (2, "Service temporarily unavailable"),
}


@dataclass(frozen=True)
class GraphMessage:
    """One message the fake accepted."""

    id: str
    phone_number_id: str
    to: str
    type: str
    payload: dict[str, Any]
    received_at: float

    @property
    def text(self) -> str | None:
        """The text the user would see first: a text body or an interactive message's body."""
        if self.type == "text":
            return self.payload["text"]["body"]  # type: ignore[no-any-return]  # (a text message's body is a str)
        if self.type == "interactive":
            return self.payload["interactive"]["body"]["text"]  # type: ignore[no-any-return]  # (an interactive body's text is a str)
        return None


@dataclass(frozen=True)
class _Scripted:
    status: int | None  # None: no failure, only the delay
    code: int
    message: str
    retry_after: float | None
    delay: float = 0.0


@dataclass(frozen=True)
class _Media:
    data: bytes
    mime_type: str


class FakeGraphAPI:
    """A Graph API imitation for ``POST /{version}/{phone_number_id}/messages``.

    ``token``: the only bearer token accepted. ``phone_number_ids``: the known sender ids
    (default: any). ``rate_limit``: messages per second per phone number id (None: no limit).
    ``pair_limit``: ``(n, seconds)``, at most n messages to one recipient per window.
    ``latency``: seconds to wait before each answer (benchmarks). ``rate_limit_status``:
    the HTTP status of rate-limit answers (which carry ``Retry-After``: seconds until the window frees).
    ``window``: enforce the 24-hour customer service window: a message other than a template
    to a user who has not written (:meth:`user_wrote`) in the last 24 hours of the fake's clock
    (:meth:`set_time`, :meth:`advance`) is refused with code 131047, as Graph does.
    """

    def __init__(self, token: str = DEFAULT_TOKEN, *, phone_number_ids: Iterable[str] | None = None,
                 rate_limit: float | None = None, pair_limit: tuple[int, float] | None = None,
                 latency: float = 0.0, rate_limit_status: int = 429, window: bool = False, tls: bool = False) -> None:
        self.token = token
        self.tls = tls
        self.phone_number_ids = frozenset(phone_number_ids) if phone_number_ids is not None else None
        self.rate_limit = rate_limit
        self.pair_limit = pair_limit
        self.latency = latency
        self.rate_limit_status = rate_limit_status
        self.window = window
        self._lock = threading.Lock()
        self._clock: float | None = None  # None: the real time
        self._wrote: dict[str, float] = {}
        self._media: dict[str, _Media] = {}
        self._typing: list[str] = []
        self._sent: list[GraphMessage] = []
        self._read: list[str] = []
        self._read_from: list[tuple[str, str]] = []  # (phone_number_id, message_id)
        self._scripted: deque[_Scripted] = deque()
        self._recent: dict[str, deque[float]] = {}
        self._recent_pair: dict[tuple[str, str], deque[float]] = {}
        self._requests = 0
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tls: TLSFront | None = None
        self._transport: list[tuple[str, int | None]] = []

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeGraphAPI:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-graph-api", daemon=True)
        self._thread.start()
        if self.tls:  # TLS and HTTP/2 in front of the plain server (hypercorn, trustme: imported by its start())
            try:
                self._tls = TLSFront(f"http://127.0.0.1:{server.server_address[1]}").start()
            except BaseException:
                self.stop()
                raise
        return self

    def stop(self) -> None:
        server, thread, tls = self._server, self._thread, self._tls
        self._server = self._thread = self._tls = None
        if tls is not None:
            tls.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeGraphAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:53211`` (``https://`` with ``tls``; use as ``WHATSAPP_API_URL``)."""
        if self._tls is not None:
            return f"https://127.0.0.1:{self._tls.port}"
        if self._server is None:
            raise RuntimeError("FakeGraphAPI is not running; call start() or use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def ca_file(self) -> str | None:
        """With ``tls``: the PEM file of the certificate authority a client must trust (else None)."""
        return self._tls.ca_file if self._tls is not None else None

    def config(self, phone_number_id: str = DEFAULT_PHONE_NUMBER_ID, *, api_version: str = DEFAULT_API_VERSION,
               token: str | None = None) -> WhatsAppConfig:
        """A sender configuration pointing at this server."""
        return WhatsAppConfig(token=token or self.token, phone_number_id=phone_number_id, api_url=self.url,
                              api_version=api_version, ca_file=self.ca_file)

    def env(self, phone_number_id: str = DEFAULT_PHONE_NUMBER_ID) -> dict[str, str]:
        """The ``WHATSAPP_*`` environment variables that point a flowkit process at this server."""
        env = {"WHATSAPP_TOKEN": self.token, "WHATSAPP_PHONE_NUMBER_ID": phone_number_id, "WHATSAPP_API_URL": self.url}
        return env | ({"WHATSAPP_CA_FILE": self.ca_file} if self.ca_file else {})

    # ------------------------------------------------------------ programming and inspection

    def fail_next(self, n: int = 1, status: int = 500, *, retry_after: float | None = None, code: int | None = None,
                  message: str | None = None, delay: float = 0.0) -> None:
        """Answer the next ``n`` authenticated requests with ``status`` (and a Graph error body),
        each after ``delay`` seconds."""
        default_code, default_message = _DEFAULT_ERRORS.get(status, (1, "An unknown error occurred"))
        with self._lock:
            self._scripted.extend([_Scripted(status, code if code is not None else default_code,
                                             message or default_message, retry_after, delay)] * n)

    def delay_next(self, seconds: float | Iterable[float], n: int = 1) -> None:
        """Answer the next requests late but normally: ``n`` times ``seconds``, or one request
        per item of a list of delays (a script: ``delay_next([0.5, 0, 2])``)."""
        delays = [float(seconds)] * n if isinstance(seconds, int | float) else [float(d) for d in seconds]
        with self._lock:
            self._scripted.extend(_Scripted(None, 0, "", None, d) for d in delays)

    # ------------------------------------------------------------ the clock and the 24-hour window

    def now(self) -> float:
        """The fake's clock (epoch seconds): the real time unless set."""
        with self._lock:
            return self._clock if self._clock is not None else time.time()

    def set_time(self, at: float | None) -> None:
        """Freeze the clock at ``at`` (epoch seconds); None goes back to the real time."""
        with self._lock:
            self._clock = at

    def advance(self, seconds: float) -> None:
        """Move the clock forward (freezing it at the current time first if it runs)."""
        with self._lock:
            self._clock = (self._clock if self._clock is not None else time.time()) + seconds

    def user_wrote(self, wa_id: str, at: float | None = None) -> None:
        """Record that ``wa_id`` sent a message at ``at`` (default: now), opening their 24-hour window."""
        when = self.now() if at is None else at
        with self._lock:
            self._wrote[wa_id] = max(when, self._wrote.get(wa_id, when))

    # ------------------------------------------------------------ media

    def add_media(self, data: bytes, mime_type: str = "image/jpeg") -> str:
        """Store ``data`` as if a user had sent it; returns its media id (for webhooks and downloads)."""
        with self._lock:
            self._counter += 1
            media_id = str(10**15 + self._counter)
            self._media[media_id] = _Media(bytes(data), mime_type)
        return media_id

    @property
    def typing_indicators(self) -> list[str]:
        """Message ids whose read receipt also asked for the typing indicator, in order."""
        with self._lock:
            return list(self._typing)

    @property
    def sent(self) -> list[GraphMessage]:
        """Messages accepted so far, oldest first (a copy)."""
        with self._lock:
            return list(self._sent)

    @property
    def read_receipts(self) -> list[str]:
        """Message ids marked as read, in order."""
        with self._lock:
            return list(self._read)

    @property
    def read_receipts_from(self) -> list[tuple[str, str]]:
        """(phone number id that marked it, message id) of each read receipt, in order."""
        with self._lock:
            return list(self._read_from)

    @property
    def requests(self) -> int:
        """Requests received, failed ones included."""
        with self._lock:
            return self._requests

    @property
    def transport(self) -> list[tuple[str, int | None]]:
        """(HTTP version, the client's port) of each request: ``("2", 50412)``, ``("1.1", ...)``;
        the distinct ports are the connections the clients opened."""
        with self._lock:
            return list(self._transport)

    def to(self, wa_id: str) -> list[GraphMessage]:
        """Messages accepted for one recipient."""
        return [m for m in self.sent if m.to == wa_id]

    def reset(self) -> None:
        """Forget messages, receipts, pending failures, rate-limit windows and the request count."""
        with self._lock:
            self._sent.clear()
            self._read.clear()
            self._read_from.clear()
            self._typing.clear()
            self._wrote.clear()
            self._media.clear()
            self._clock = None
            self._scripted.clear()
            self._recent.clear()
            self._recent_pair.clear()
            self._requests = 0
            self._transport.clear()

    # ------------------------------------------------------------ the endpoint

    def _http_answer(self, method: str, path: str, headers: Mapping[str, str], body: bytes, http_version: str,
                     client_port: int | None) -> tuple[int, bytes, dict[str, str]]:
        """One request as the server answers it (behind the TLS front too): (status, body bytes, headers)."""
        with self._lock:
            self._transport.append((http_version, client_port))
        status, payload, extra = self._answer(method, path, headers, body)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        out = {} if "Content-Type" in extra else {"Content-Type": "application/json; charset=UTF-8"}
        out["Content-Length"] = str(len(data))
        return status, data, out | extra

    def _answer(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any] | bytes, dict[str, str]]:
        """(status, JSON body or raw bytes, extra headers) for one request. Pure apart from the recorded state."""
        with self._lock:
            self._requests += 1
        if self.latency:
            time.sleep(self.latency)
        denied = _unauthorized(headers.get("authorization") or "", self.token)
        if denied is not None:
            return denied
        if method == "GET":
            return self._scripted_answer() or self._media_answer(path)
        match = _PATH.match(path)
        if method != "POST" or not match:
            return _error(400, 100, f"Unsupported {method.lower()} request. Unknown path components: {path}", subcode=33)
        return self._messages(match.group(2), body)

    def _messages(self, phone_number_id: str, body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        """``POST /{version}/{phone_number_id}/messages``: a message or a read receipt."""
        if self.phone_number_ids is not None and phone_number_id not in self.phone_number_ids:
            return _error(400, 100, f"Unsupported post request. Object with ID '{phone_number_id}' does not exist, "
                                    "cannot be loaded due to missing permissions, or does not support this operation.",
                          subcode=33)
        failed = self._scripted_answer()
        if failed is not None:
            return failed
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return _error(400, 100, "(#100) The request body must be a JSON object")
        try:
            kind, to = validate(payload)
        except InvalidRequest as exc:
            return _error(400, 100, f"(#100) {exc}")
        if kind == "read":
            with self._lock:
                self._read.append(payload["message_id"])
                self._read_from.append((phone_number_id, payload["message_id"]))
                if payload.get("typing_indicator") is not None:
                    self._typing.append(payload["message_id"])
            return 200, {"success": True}, {}
        if self.window and kind != "template" and not self._in_window(to):
            return _error(400, 131047, "(#131047) Re-engagement message", details=_WINDOW_DETAILS)
        return self._accept(phone_number_id, kind, to, payload)

    def _accept(self, phone_number_id: str, kind: str, to: str,
                payload: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Record a valid message under a fresh ``wamid``, unless a rate limit refuses it."""
        with self._lock:
            limited = self._rate_limited(phone_number_id, to)
            if limited is not None:
                code, message, wait = limited
                return _error(self.rate_limit_status, code, message,
                              headers={"Retry-After": str(max(1, math.ceil(wait)))})
            self._counter += 1
            # Unique across servers and runs (random part), and ordered within one (counter).
            wamid = "wamid." + base64.b64encode(f"{to}:{self._counter}:".encode() + os.urandom(9)).decode("ascii")
            self._sent.append(GraphMessage(wamid, phone_number_id, to, kind, payload, time.time()))
        return 200, {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                     "messages": [{"id": wamid}]}, {}

    def _scripted_answer(self) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """Wait out the next scripted delay and answer its failure, if one is queued."""
        with self._lock:
            scripted = self._scripted.popleft() if self._scripted else None
        if scripted is None:
            return None
        if scripted.delay > 0:
            time.sleep(scripted.delay)
        if scripted.status is None:
            return None
        extra = {"Retry-After": f"{scripted.retry_after:g}"} if scripted.retry_after is not None else {}
        return _error(scripted.status, scripted.code, scripted.message, transient=scripted.status >= 500, headers=extra)

    def _in_window(self, wa_id: str) -> bool:
        now = self.now()
        with self._lock:
            wrote = self._wrote.get(wa_id)
        return wrote is not None and now - wrote < WINDOW_SECONDS

    def _media_answer(self, path: str) -> tuple[int, dict[str, Any] | bytes, dict[str, str]]:
        """``GET /{version}/{media-id}`` (the description with a download URL) and the download itself."""
        info, download = _MEDIA_PATH.match(path), _DOWNLOAD_PATH.match(path)
        media_id = info.group(2) if info else download.group(1) if download else None
        if media_id is None:
            return _error(400, 100, f"Unsupported get request. Unknown path components: {path}", subcode=33)
        with self._lock:
            media = self._media.get(media_id)
        if media is None:
            return _error(400, 100, f"Unsupported get request. Object with ID '{media_id}' does not exist, "
                                    "cannot be loaded due to missing permissions, or does not support this operation.",
                          subcode=33)
        if download:
            return 200, media.data, {"Content-Type": media.mime_type}
        return 200, {"messaging_product": "whatsapp", "url": f"{self.url}/download/{media_id}",
                     "mime_type": media.mime_type, "sha256": hashlib.sha256(media.data).hexdigest(),
                     "file_size": len(media.data), "id": media_id}, {}

    def _rate_limited(self, phone_number_id: str, to: str) -> tuple[int, str, float] | None:
        """(code, message, seconds until it frees) when over a sliding window; called under the
        lock. Only accepted messages count."""
        now = time.monotonic()
        checks: list[tuple[deque[float], int, float, tuple[int, str]]] = []
        if self.rate_limit is not None:
            window = self._recent.setdefault(phone_number_id, deque())
            checks.append((window, max(1, int(self.rate_limit)), 1.0, (130429, "(#130429) Rate limit hit")))
        if self.pair_limit is not None:
            window = self._recent_pair.setdefault((phone_number_id, to), deque())
            checks.append((window, self.pair_limit[0], self.pair_limit[1],
                           (131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit")))
        for window, limit, span, error in checks:
            while window and window[0] <= now - span:
                window.popleft()
            if len(window) >= limit:
                return (*error, window[0] + span - now)
        for window, *_ in checks:
            window.append(now)
        return None


def _unauthorized(auth: str, token: str) -> tuple[int, dict[str, Any], dict[str, str]] | None:
    """Graph's 401 (code 190) unless ``auth`` is ``Bearer <token>`` (compared in constant time)."""
    if auth.lower().startswith("bearer ") and secrets.compare_digest(auth[7:].strip().encode(), token.encode()):
        return None
    reason = "Cannot parse access token" if auth else "An active access token must be used"
    return _error(401, 190, f"Invalid OAuth access token - {reason}",
                  headers={"WWW-Authenticate": f'OAuth "Facebook Platform" "invalid_token" "{reason}"'})


def _error(status: int, code: int, message: str, *, subcode: int | None = None, transient: bool = False,
           headers: dict[str, str] | None = None, details: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    err: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if details is not None:
        err["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if subcode is not None:
        err["error_subcode"] = subcode
    if transient:
        err["is_transient"] = True
    err["fbtrace_id"] = "A" + secrets.token_urlsafe(16)[:22]
    return status, {"error": err}, headers or {}


# ---------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not block stop()
    request_queue_size = 512  # the default listen backlog (5) resets bursts of concurrent senders

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a timed-out sender, a killed simulator) is
        # normal here; anything else is a bug in the fake and should be seen.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


def _handler_for(fake: FakeGraphAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so a sender's connection pool is exercised like with Graph
        timeout = 30  # an idle keep-alive connection closes eventually

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes; with Nagle on, the second waits for the
            # client's delayed ACK: ~40 ms per request instead of ~1.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _serve(self, method: str) -> None:
            length = self.headers.get("Content-Length") or "0"
            body = self.rfile.read(int(length)) if length.isdigit() and int(length) > 0 else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            # behind the TLS front (graph_tls.py) the front says what the client spoke
            version = headers.pop(VERSION_HEADER, None) or self.request_version[5:]
            port = headers.pop(PORT_HEADER, None) or self.client_address[1]
            status, data, out = fake._http_answer(method, self.path, headers, body, version, int(port))
            self.send_response(status)
            for key, value in out.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self._serve("POST")

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks
            pass

    return Handler
