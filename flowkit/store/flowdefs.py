"""Reads of stored flow definitions, sync and async: what the runtime's flow-resolution
requests (runtime/handler.py ``_Resolve``) become on a cache miss. Keys: store/keys.py."""

from __future__ import annotations

from typing import Protocol

from flowkit.store import keys as K


class SyncHashReader(Protocol):
    def hget(self, name: str, key: str) -> bytes | str | None: ...


class AsyncHashReader(Protocol):
    async def hget(self, name: str, key: str) -> bytes | str | None: ...


def _text(v: bytes | str | None) -> str | None:
    return v.decode() if isinstance(v, bytes) else v


def definition(client: SyncHashReader, name: str, version: str | None) -> tuple[str, str] | None:
    """``(version, YAML)`` of flow ``name`` at ``version`` (None: the latest), or None if unknown."""
    if version is None:
        version = _text(client.hget(K.flowdef_key(name), K.FLOWDEF_LATEST))
        if version is None:
            return None
    text = _text(client.hget(K.flowdef_key(name), version))
    return None if text is None else (version, text)


async def adefinition(client: AsyncHashReader, name: str, version: str | None) -> tuple[str, str] | None:
    """:func:`definition` on an asyncio client (two round trips only for the latest version)."""
    if version is None:
        version = _text(await client.hget(K.flowdef_key(name), K.FLOWDEF_LATEST))
        if version is None:
            return None
    text = _text(await client.hget(K.flowdef_key(name), version))
    return None if text is None else (version, text)


class AsyncFlowIndexReader(AsyncHashReader, Protocol):
    async def smembers(self, name: str) -> set[bytes] | set[str]: ...


async def alatest_versions(client: AsyncFlowIndexReader) -> dict[str, str]:
    """Every registered flow name -> the version new sessions use (names without one are left out)."""
    out: dict[str, str] = {}
    for name in sorted(_text(raw) or "" for raw in await client.smembers(K.FLOW_NAMES)):
        version = _text(await client.hget(K.flowdef_key(name), K.FLOWDEF_LATEST))
        if version is not None:
            out[name] = version
    return out
