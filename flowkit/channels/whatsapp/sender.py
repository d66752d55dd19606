"""Outbound side: send messages through the WhatsApp Cloud API (Graph ``/messages``).

:class:`WhatsAppSender` (sync, ``httpx.Client``) and :class:`AsyncWhatsAppSender`
(``httpx.AsyncClient``) share everything but the I/O: the request bodies are built and
validated by plain functions (:mod:`.outgoing`), and the retry loop is a sans-io generator (like the
runtime's CAS loop) that yields "post this" / "sleep that long" and receives responses.
Each driver is ten lines.

Retries: 429 and Graph's rate-limit codes (honouring ``Retry-After``), 5xx and transient
Graph errors, and connection failures (the request never left) are retried with
exponential backoff and jitter, up to ``max_attempts``. A timeout or a dropped
connection *after* the request was sent is not retried: WhatsApp has no idempotency key,
so a retry could deliver the message twice. Any other 4xx fails at once with a
:class:`~flowkit.errors.GraphAPIError` that carries Graph's code, message and fbtrace_id
and says what to check. The access token is sent in a header only and never logged.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import email.utils
import hashlib
import json
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import httpx

from flowkit.channels.whatsapp.outgoing import (
    Header,
    buttons_message,
    cta_url_message,
    list_message,
    location_request_message,
    media_message,
    read_receipt,
    template_message,
    text_message,
)
from flowkit.envflag import env_flag
from flowkit.errors import ChannelError, ConfigError, GraphAPIError
from flowkit.log import get_logger
from flowkit.retry import RetryPolicy

log = get_logger("flowkit.channels.whatsapp")

DEFAULT_API_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v21.0"

# Graph error codes that mean "too fast, try later" whatever the HTTP status (Graph often
# answers them with 400): app-level call limits, Cloud API throughput, per-user pair limit.
RATE_LIMIT_CODES = frozenset({4, 80007, 130429, 131056})


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class WhatsAppConfig:
    """Where and as whom to send. The token is kept out of ``repr`` so it cannot leak into logs."""

    token: str = field(repr=False)
    phone_number_id: str
    api_url: str = DEFAULT_API_URL
    api_version: str = DEFAULT_API_VERSION
    timeout: float = 10.0
    #: Offer HTTP/2 (TLS ALPN; Graph speaks it): the replies of all sessions share one
    #: connection per Graph host instead of a pool of HTTP/1.1 ones. A plain ``http://`` URL
    #: (a local imitation) is spoken HTTP/1.1 either way.
    http2: bool = True
    #: A PEM file of the certificate authorities to trust instead of the system's (a TLS
    #: proxy in front of Graph, a test server); None: the usual ones (certifi).
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not self.token:
            raise ConfigError("WHATSAPP_TOKEN is not set: give the access token of your WhatsApp app "
                              "(Meta App Dashboard > WhatsApp > API Setup)")
        if not self.phone_number_id:
            raise ConfigError("WHATSAPP_PHONE_NUMBER_ID is not set: give the id of the sending phone number "
                              "(Meta App Dashboard > WhatsApp > API Setup), not the phone number itself")
        if not self.api_url.startswith(("http://", "https://")):
            raise ConfigError(f"WHATSAPP_API_URL must start with http:// or https://, got {self.api_url!r}")
        version = self.api_version.strip()
        object.__setattr__(self, "api_version", version if version.startswith("v") else f"v{version}")
        object.__setattr__(self, "api_url", self.api_url.rstrip("/"))
        if self.ca_file is not None:
            self._ssl_context()  # a file that is missing or holds no certificate fails here, not at the first reply

    def _ssl_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"WHATSAPP_CA_FILE names {self.ca_file!r}, which cannot be read as PEM certificate "
                              f"authorities ({exc}): point it at a PEM file, or unset it to trust the usual "
                              "ones") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, token: str | None = None,
                 phone_number_id: str | None = None, api_url: str | None = None, api_version: str | None = None,
                 timeout: float | None = None) -> WhatsAppConfig:
        """Read ``WHATSAPP_TOKEN``, ``WHATSAPP_PHONE_NUMBER_ID``, ``WHATSAPP_API_URL``,
        ``WHATSAPP_API_VERSION``, ``WHATSAPP_HTTP2`` (``0`` turns HTTP/2 off) and
        ``WHATSAPP_CA_FILE``; arguments that are not None win over the environment."""
        env = os.environ if environ is None else environ
        return cls(
            token=token if token is not None else env.get("WHATSAPP_TOKEN", ""),
            # WHATSAPP_PHONE_NUMBER_ID may list several numbers (the webhook accepts all of them);
            # replies go from the first.
            phone_number_id=phone_number_id if phone_number_id is not None
            else env.get("WHATSAPP_PHONE_NUMBER_ID", "").split(",")[0].strip(),
            api_url=api_url or env.get("WHATSAPP_API_URL") or DEFAULT_API_URL,
            api_version=api_version or env.get("WHATSAPP_API_VERSION") or DEFAULT_API_VERSION,
            timeout=timeout if timeout is not None else 10.0,
            http2=env_flag("WHATSAPP_HTTP2", True, env),
            ca_file=env.get("WHATSAPP_CA_FILE") or None,
        )

    def client_options(self) -> dict[str, Any]:
        """The httpx client arguments this configuration asks for (timeout, HTTP/2, trust)."""
        verify: ssl.SSLContext | bool = self._ssl_context() if self.ca_file else True
        return {"timeout": self.timeout, "http2": self.http2, "verify": verify}

    @property
    def messages_url(self) -> str:
        return f"{self.api_url}/{self.api_version}/{self.phone_number_id}/messages"

    def media_url(self, media_id: str) -> str:
        """Where Graph describes an uploaded or received media object (its download URL, type, hash)."""
        if not media_id or not media_id.replace("_", "").replace("-", "").isalnum():
            raise ChannelError(f"media id must be letters and digits as in the webhook's media `id`, got {media_id!r}")
        return f"{self.api_url}/{self.api_version}/{media_id}"


@dataclass(frozen=True)
class MediaDownload:
    """A downloaded media object: the bytes and what Graph said about them."""

    id: str
    mime_type: str | None
    sha256: str | None
    data: bytes = field(repr=False)


def _media_info(response: httpx.Response, media_id: str) -> tuple[str, str | None, str | None]:
    """(download URL, mime type, sha256) from ``GET /{media-id}``, or GraphAPIError."""
    if not 200 <= response.status_code < 300:
        raise _error(_from_response(response), f"media lookup of {media_id}", 1)
    body = _json(response)
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise GraphAPIError(f"WhatsApp media lookup of {media_id}: the answer has no download url", status=response.status_code)
    mime = body.get("mime_type")
    sha = body.get("sha256")
    return url, mime if isinstance(mime, str) else None, sha if isinstance(sha, str) else None


def _media_bytes(response: httpx.Response, media_id: str, mime: str | None, sha: str | None) -> MediaDownload:
    if not 200 <= response.status_code < 300:
        raise _error(_from_response(response), f"media download of {media_id}", 1)
    data = response.content
    if sha:
        digest = hashlib.sha256(data).digest()
        # Graph writes the hash as hex in media lookups and as base64 in webhooks; accept either.
        if sha.lower() != digest.hex() and sha != base64.b64encode(digest).decode("ascii"):
            raise ChannelError(f"media {media_id} arrived damaged: its sha256 does not match what WhatsApp announced; download it again")
    return MediaDownload(media_id, mime, sha, data)


# ---------------------------------------------------------------- the sans-io exchange


@dataclass(frozen=True)
class _Post:
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class _Sleep:
    seconds: float


@dataclass(frozen=True)
class _Failure:
    """One failed attempt, before we know whether it is the last."""

    status: int | None
    code: int | None = None
    subcode: int | None = None
    graph_message: str | None = None
    fbtrace_id: str | None = None
    retry_after: float | None = None
    retryable: bool = False
    detail: str | None = None


_SAFE_TO_RETRY = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _exchange(payload: Mapping[str, Any], what: str, policy: RetryPolicy,
              rng: random.Random) -> Generator[_Post | _Sleep, httpx.Response | httpx.TransportError | None, dict[str, Any]]:
    """Post ``payload`` until it succeeds or must fail; return the decoded 2xx body."""
    attempt = 0
    while True:
        attempt += 1
        outcome = yield _Post(payload)
        if isinstance(outcome, httpx.Response) and 200 <= outcome.status_code < 300:
            body = _json(outcome)
            if isinstance(body, dict):
                return body
            failure = _Failure(outcome.status_code, detail="Graph answered 2xx without a JSON object")
        elif isinstance(outcome, httpx.Response):
            failure = _from_response(outcome)
        elif isinstance(outcome, _SAFE_TO_RETRY):
            failure = _Failure(None, retryable=True, detail=f"cannot reach the WhatsApp API ({type(outcome).__name__}: {outcome}); "
                                                              "check WHATSAPP_API_URL and the network")
        else:
            failure = _Failure(None, detail=f"the connection failed after the request was sent ({type(outcome).__name__}); "
                                            "it may or may not have been delivered, so it was not retried")
        too_long = failure.retry_after is not None and failure.retry_after > policy.max_retry_after
        if not failure.retryable or attempt >= policy.attempts or too_long:
            raise _error(failure, what, attempt)
        delay = failure.retry_after if failure.retry_after is not None else policy.delay(attempt, rng)
        log.warning("whatsapp request failed; retrying", extra={
            "op": what, "attempt": attempt, "http_status": failure.status, "graph_code": failure.code,
            "graph_subcode": failure.subcode, "fbtrace_id": failure.fbtrace_id,
            "reason": failure.graph_message or failure.detail, "to": payload.get("to"), "delay_s": round(delay, 3)})
        yield _Sleep(delay)


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _from_response(response: httpx.Response) -> _Failure:
    status = response.status_code
    body = _json(response)
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    code, subcode = _int(err.get("code")), _int(err.get("error_subcode"))
    message = err.get("message") if isinstance(err.get("message"), str) else None
    data = err.get("error_data")
    if message and isinstance(data, dict) and isinstance(data.get("details"), str):
        message = f"{message} ({data['details']})"
    retryable = status == 429 or status >= 500 or code in RATE_LIMIT_CODES or err.get("is_transient") is True
    return _Failure(
        status, code, subcode, message,
        fbtrace_id=err.get("fbtrace_id") if isinstance(err.get("fbtrace_id"), str) else None,
        retry_after=_retry_after(response.headers.get("retry-after")),
        retryable=retryable,
        detail=None if err else (response.text[:200] or None),
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _hint(f: _Failure) -> str:  # noqa: C901 -- one branch per Graph error family: a lookup table in code
    """What the operator should do about it."""
    if f.status == 401 or f.code == 190:
        return "check WHATSAPP_TOKEN: the access token is invalid or has expired"
    if f.code in (10, 200) or f.status == 403:
        return "check that WHATSAPP_TOKEN has the whatsapp_business_messaging permission for this phone number"
    if f.code == 100 and f.subcode == 33:
        return "check WHATSAPP_PHONE_NUMBER_ID: Graph does not know it, or the token cannot see it"
    if f.status == 404:
        return "check WHATSAPP_API_URL and the API version"
    if f.code == 131047:
        return "more than 24 hours passed since the user last wrote; send an approved template instead"
    if f.code == 132001:
        return "the template does not exist in that language; check its name and language code"
    if f.code == 131026:
        return "the recipient cannot receive this message (not on WhatsApp, an old app, or they blocked you)"
    if f.code in RATE_LIMIT_CODES or f.status == 429:
        return "WhatsApp is rate limiting this number; send more slowly or try again later"
    if f.status is not None and f.status >= 500:
        return "WhatsApp had a server error; try again later"
    if f.code == 100:
        return "WhatsApp rejected the request as invalid; fix the field it names"
    return "see https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes"


def _error(f: _Failure, what: str, attempts: int) -> GraphAPIError:
    parts = []
    if f.status is not None:
        parts.append(f"HTTP {f.status}")
    if f.code is not None:
        parts.append(f"code {f.code}" + (f"/{f.subcode}" if f.subcode is not None else ""))
    if f.fbtrace_id:
        parts.append(f"fbtrace_id {f.fbtrace_id}")
    head = f"WhatsApp {what} failed" + (f" ({', '.join(parts)})" if parts else "")
    said = f.graph_message or f.detail
    tail = f" after {attempts} attempts" if attempts > 1 else ""
    hint = _hint(f) if f.status is not None else ""
    text = head + (f": {said}" if said else "") + tail + (f"; {hint}" if hint else "")
    return GraphAPIError(text, status=f.status, code=f.code, subcode=f.subcode, graph_message=f.graph_message,
                         fbtrace_id=f.fbtrace_id, retry_after=f.retry_after, attempts=attempts, retryable=f.retryable)


def _message_id(body: Mapping[str, Any], what: str) -> str:
    messages = body.get("messages")
    first = messages[0] if isinstance(messages, list) and messages else None
    wamid = first.get("id") if isinstance(first, dict) else None
    if isinstance(wamid, str):
        return wamid
    raise GraphAPIError(f"WhatsApp {what}: the response has no messages[0].id: {str(dict(body))[:200]}", status=200)


# ---------------------------------------------------------------- the two senders


class _SenderBase:
    _owns_client: bool  # set by each subclass: whether close() closes its HTTP client

    def __init__(self, token: str | None, phone_number_id: str | None, *, api_url: str | None,
                 api_version: str | None, config: WhatsAppConfig | None, timeout: float | None, max_attempts: int,
                 backoff: float, max_backoff: float, max_retry_after: float, rng: random.Random | None) -> None:
        # Explicit arguments win over a given config, which wins over the environment.
        if config is None:
            base = WhatsAppConfig.from_env(token=token, phone_number_id=phone_number_id, api_url=api_url,
                                           api_version=api_version, timeout=timeout)
        else:
            base = dataclasses.replace(
                config, token=token or config.token, phone_number_id=phone_number_id or config.phone_number_id,
                api_url=api_url or config.api_url, api_version=api_version or config.api_version,
                timeout=timeout if timeout is not None else config.timeout)
        self.config = base
        self.retry = RetryPolicy(max_attempts, backoff, max_backoff, max_retry_after)  # (flowkit/retry.py)
        self._rng = rng or random.Random()
        self._headers = {"Authorization": f"Bearer {base.token}", "Content-Type": "application/json"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def for_number(self, phone_number_id: str) -> Self:
        """This sender (token, HTTP client, retry policy) sending from another number of the
        account: several numbers on one deployment (flowkit/channels/whatsapp/numbers.py)."""
        if phone_number_id == self.config.phone_number_id:
            return self
        twin = copy.copy(self)
        twin.config = dataclasses.replace(self.config, phone_number_id=phone_number_id)
        twin._owns_client = False  # the original closes the shared client
        return twin

    def _plan(self, payload: Mapping[str, Any], what: str) -> Generator[Any, Any, dict[str, Any]]:
        return _exchange(payload, what, self.retry, self._rng)


class WhatsAppSender(_SenderBase):
    """Send WhatsApp messages (blocking). Configuration comes from the environment
    (:meth:`WhatsAppConfig.from_env`); arguments override it. Every ``send_*`` returns the wamid."""

    def __init__(self, token: str | None = None, phone_number_id: str | None = None, *, api_url: str | None = None,
                 api_version: str | None = None, config: WhatsAppConfig | None = None, timeout: float | None = None,
                 max_attempts: int = 4, backoff: float = 0.5, max_backoff: float = 8.0, max_retry_after: float = 60.0,
                 client: httpx.Client | None = None, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        super().__init__(token, phone_number_id, api_url=api_url, api_version=api_version, config=config,
                         timeout=timeout, max_attempts=max_attempts, backoff=backoff, max_backoff=max_backoff,
                         max_retry_after=max_retry_after, rng=rng)
        self._owns_client = client is None
        self._client = client or httpx.Client(**self.config.client_options())
        self._sleep = sleep

    def _run(self, payload: Mapping[str, Any], what: str) -> dict[str, Any]:
        plan = self._plan(payload, what)
        outcome: Any = None
        try:
            while True:
                op = plan.send(outcome)
                if isinstance(op, _Sleep):
                    self._sleep(op.seconds)
                    outcome = None
                    continue
                try:
                    outcome = self._client.post(self.config.messages_url, json=op.payload, headers=self._headers)
                except httpx.TransportError as exc:
                    outcome = exc
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]  # (the exchange's result, typed Any by StopIteration)

    def send_payload(self, payload: Mapping[str, Any]) -> str:
        """Post any ``/messages`` body (for kinds without a helper); returns the wamid."""
        return _message_id(self._run(payload, "send"), "send")

    def send_text(self, to: str, text: str, *, preview_url: bool = False) -> str:
        return _message_id(self._run(text_message(to, text, preview_url=preview_url), "send_text"), "send_text")

    def send_buttons(self, to: str, text: str, buttons: Sequence[tuple[str, str]], *, header: Header | None = None,
                     footer: str | None = None) -> str:
        return _message_id(self._run(buttons_message(to, text, buttons, header=header, footer=footer), "send_buttons"),
                           "send_buttons")

    def send_list(self, to: str, text: str, button: str, sections: Sequence[Mapping[str, Any]], *,
                  header: Header | None = None, footer: str | None = None) -> str:
        return _message_id(self._run(list_message(to, text, button, sections, header=header, footer=footer),
                                     "send_list"), "send_list")

    def send_media(self, to: str, kind: str, ref: str, *, caption: str | None = None) -> str:
        """Send an image, audio, video, document or sticker by https URL or uploaded media id."""
        return _message_id(self._run(media_message(to, kind, ref, caption=caption), "send_media"), "send_media")

    def send_cta_url(self, to: str, text: str, display_text: str, url: str, *, header: Header | None = None,
                     footer: str | None = None) -> str:
        return _message_id(self._run(cta_url_message(to, text, display_text, url, header=header, footer=footer),
                                     "send_cta_url"), "send_cta_url")

    def send_location_request(self, to: str, text: str) -> str:
        return _message_id(self._run(location_request_message(to, text), "send_location_request"),
                           "send_location_request")

    def download_media(self, media_id: str) -> MediaDownload:
        """The bytes of a received (or uploaded) media object: ``GET /{media-id}`` for its URL,
        then that URL, both with the access token (the URL alone is not enough)."""
        try:
            url, mime, sha = _media_info(self._client.get(self.config.media_url(media_id), headers=self._headers), media_id)
            return _media_bytes(self._client.get(url, headers=self._headers), media_id, mime, sha)
        except httpx.TransportError as exc:
            raise GraphAPIError(f"WhatsApp media download of {media_id} failed: cannot reach the WhatsApp API "
                                f"({type(exc).__name__}); check WHATSAPP_API_URL and the network", retryable=True) from None

    def send_template(self, to: str, name: str, language: str = "en_US",
                      components: Sequence[Mapping[str, Any]] | None = None) -> str:
        return _message_id(self._run(template_message(to, name, language, components), "send_template"), "send_template")

    def mark_read(self, message_id: str, *, typing: bool = False) -> str:
        """Mark an inbound message as read (and with ``typing`` show "typing…"); returns ``message_id``."""
        self._run(read_receipt(message_id, typing=typing), "mark_read")
        return message_id

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> WhatsAppSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncWhatsAppSender(_SenderBase):
    """The asyncio twin of :class:`WhatsAppSender`: same arguments (``sleep`` is awaited), same behaviour."""

    def __init__(self, token: str | None = None, phone_number_id: str | None = None, *, api_url: str | None = None,
                 api_version: str | None = None, config: WhatsAppConfig | None = None, timeout: float | None = None,
                 max_attempts: int = 4, backoff: float = 0.5, max_backoff: float = 8.0, max_retry_after: float = 60.0,
                 client: httpx.AsyncClient | None = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        super().__init__(token, phone_number_id, api_url=api_url, api_version=api_version, config=config,
                         timeout=timeout, max_attempts=max_attempts, backoff=backoff, max_backoff=max_backoff,
                         max_retry_after=max_retry_after, rng=rng)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(**self.config.client_options())
        self._sleep = sleep

    async def _run(self, payload: Mapping[str, Any], what: str) -> dict[str, Any]:
        plan = self._plan(payload, what)
        outcome: Any = None
        try:
            while True:
                op = plan.send(outcome)
                if isinstance(op, _Sleep):
                    await self._sleep(op.seconds)
                    outcome = None
                    continue
                try:
                    outcome = await self._client.post(self.config.messages_url, json=op.payload, headers=self._headers)
                except httpx.TransportError as exc:
                    outcome = exc
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]  # (the exchange's result, typed Any by StopIteration)

    async def send_payload(self, payload: Mapping[str, Any]) -> str:
        return _message_id(await self._run(payload, "send"), "send")

    async def send_text(self, to: str, text: str, *, preview_url: bool = False) -> str:
        return _message_id(await self._run(text_message(to, text, preview_url=preview_url), "send_text"), "send_text")

    async def send_buttons(self, to: str, text: str, buttons: Sequence[tuple[str, str]], *,
                           header: Header | None = None, footer: str | None = None) -> str:
        return _message_id(await self._run(buttons_message(to, text, buttons, header=header, footer=footer),
                                           "send_buttons"), "send_buttons")

    async def send_list(self, to: str, text: str, button: str, sections: Sequence[Mapping[str, Any]], *,
                        header: Header | None = None, footer: str | None = None) -> str:
        return _message_id(await self._run(list_message(to, text, button, sections, header=header, footer=footer),
                                           "send_list"), "send_list")

    async def send_media(self, to: str, kind: str, ref: str, *, caption: str | None = None) -> str:
        return _message_id(await self._run(media_message(to, kind, ref, caption=caption), "send_media"), "send_media")

    async def send_cta_url(self, to: str, text: str, display_text: str, url: str, *, header: Header | None = None,
                           footer: str | None = None) -> str:
        return _message_id(await self._run(cta_url_message(to, text, display_text, url, header=header, footer=footer),
                                           "send_cta_url"), "send_cta_url")

    async def send_location_request(self, to: str, text: str) -> str:
        return _message_id(await self._run(location_request_message(to, text), "send_location_request"),
                           "send_location_request")

    async def download_media(self, media_id: str) -> MediaDownload:
        try:
            info = await self._client.get(self.config.media_url(media_id), headers=self._headers)
            url, mime, sha = _media_info(info, media_id)
            return _media_bytes(await self._client.get(url, headers=self._headers), media_id, mime, sha)
        except httpx.TransportError as exc:
            raise GraphAPIError(f"WhatsApp media download of {media_id} failed: cannot reach the WhatsApp API "
                                f"({type(exc).__name__}); check WHATSAPP_API_URL and the network", retryable=True) from None

    async def send_template(self, to: str, name: str, language: str = "en_US",
                            components: Sequence[Mapping[str, Any]] | None = None) -> str:
        return _message_id(await self._run(template_message(to, name, language, components), "send_template"),
                           "send_template")

    async def mark_read(self, message_id: str, *, typing: bool = False) -> str:
        await self._run(read_receipt(message_id, typing=typing), "mark_read")
        return message_id

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncWhatsAppSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
