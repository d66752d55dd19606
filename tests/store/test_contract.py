"""The named Lua contract: every script's header lists exactly the KEYS and ARGV its Python
builder produces (names, order and count), so the two cannot drift apart."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from flowkit.store import contract as C
from flowkit.store import keys as K
from flowkit.store.codec import TERMINAL_STATUSES
from flowkit.store.driver import Call

_LINE = re.compile(r"^-- (KEYS|ARGV)\[(\d+)\] (\w+):", re.M)


def header(name: str) -> dict[str, list[str]]:
    """The names a script's header gives its KEYS and ARGV, checked to be numbered 1..n in order."""
    text = resources.files("flowkit.store").joinpath(f"{name}.lua").read_text(encoding="utf-8")
    out: dict[str, list[str]] = {"KEYS": [], "ARGV": []}
    for kind, num, label in _LINE.findall(text):
        out[kind].append(label)
        assert int(num) == len(out[kind]), f"{name}.lua: {kind}[{num}] {label} is out of order"
    return out


def built(cls: type[C._Args]) -> Call:
    """A call made by the builder itself, from placeholder values (only the shapes are checked)."""
    n = len(cls.argv_names())
    k = K.session_keys("u1")
    if cls in (C.MigrateArgs, C.RehistArgs):  # its last field spreads over the ARGV from its position on
        return cls(0, 1, (2,)).call(k)  # type: ignore[arg-type, call-arg]
    args = cls(*range(n))
    if isinstance(args, C.DumpArgs | C.RepackArgs):
        return args.call(k)
    if isinstance(args, C.RestoreArgs | C.CommitArgs | C.TimeoutArgs):
        return args.call(k, indexed=True)
    assert isinstance(args, C.RecoverArgs | C.QuarantineArgs)
    return args.call(k, K.quarantine_key("u1", "d"))


@pytest.mark.parametrize("cls", C.BUILDERS, ids=lambda c: c.SCRIPT.name)
def test_header_lists_exactly_what_the_builder_sends(cls: type[C._Args]) -> None:
    h = header(cls.SCRIPT.name)
    assert h["KEYS"] == list(cls.KEYS)
    assert h["ARGV"] == list(cls.argv_names())
    call = built(cls)
    assert call.script is cls.SCRIPT
    assert len(call.keys) == len(h["KEYS"]) and len(call.args) == len(h["ARGV"])
    assert call.args == tuple(range(len(h["ARGV"])))  # in field order, nothing added or dropped


@pytest.mark.parametrize("cls", C.BUILDERS, ids=lambda c: c.SCRIPT.name)
def test_script_reads_no_argument_beyond_its_header(cls: type[C._Args]) -> None:
    body = "\n".join(line for line in cls.SCRIPT.source.splitlines() if not line.startswith("--"))
    h = header(cls.SCRIPT.name)
    used_keys = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", body)}
    used_argv = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", body)}
    assert used_argv <= set(range(1, len(h["ARGV"]) + 1)), "no ARGV beyond the header"
    assert not used_keys or max(used_keys) <= len(h["KEYS"])
    if cls not in (C.MigrateArgs, C.RehistArgs):  # (they read their spread tail with unpack)
        assert used_argv == set(range(1, len(h["ARGV"]) + 1)), "every ARGV in the header is read"


def test_restore_without_indexes_sends_the_first_keys_and_argv_only() -> None:
    call = C.RestoreArgs(version=3, data="{}", session_id="u1").call(K.session_keys("u1"), indexed=False)
    h = header("restore")
    assert len(call.keys) == 5 and h["KEYS"][:5] == list(C.CommitArgs.KEYS[:5])
    assert call.args == (3, "{}") and h["ARGV"][:C.RestoreArgs.UNINDEXED] == ["version", "data"]


def test_commit_without_indexes_sends_the_first_keys_and_argv_only() -> None:
    """A cluster: the indexes live in other slots, so the script gets the session's keys only."""
    n = len(C.CommitArgs.argv_names())
    call = C.CommitArgs(*range(n)).call(K.session_keys("u1"))  # type: ignore[arg-type]
    assert call.keys == K.session_keys("u1").all
    assert call.args == tuple(range(C.CommitArgs.UNINDEXED))
    assert header("commit")["ARGV"][C.CommitArgs.UNINDEXED:] == ["session_id", "counter_prefix", "outbox_member"]


def test_no_script_source_is_filled_in_by_string_replacement() -> None:
    """The source sent to Redis is the file, byte for byte: shared values travel as ARGV."""
    for cls in C.BUILDERS:
        text = resources.files("flowkit.store").joinpath(f"{cls.SCRIPT.name}.lua").read_text(encoding="utf-8")
        assert cls.SCRIPT.source == text and "--[[" not in text, cls.SCRIPT.name
    assert set(C.TERMINAL_ARG.split(",")) == TERMINAL_STATUSES


def test_the_key_order_is_the_session_keys_order() -> None:
    k = K.session_keys("u1")
    assert C.CommitArgs.KEYS[:5] == ("state", "hist", "seen", "snap", "fx")
    assert k.all == tuple(getattr(k, name) for name in C.CommitArgs.KEYS[:5])
