"""Backup lines under fuzzing (hypothesis): whatever a damaged or crafted line holds, restore
answers with a BackupError that names the problem, or restores a session the checks accept,
and never a traceback of another kind; a refused file writes nothing.

Two kinds of damage: bytes changed in the file (the checksums catch them), and a line's JSON
changed in place and re-checksummed, as a tool writing backups by hand would (every check
after the checksum must hold on its own)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowkit.errors import BackupError
from flowkit.store import Store, backup, restore
from tests.store.conftest import advance
from tests.store.test_backup import _rewrite

JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False),
                      st.text(max_size=30))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
SETTINGS = settings(max_examples=120, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value (dict keys and list indexes), the value itself first."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _set(obj: Any, path: tuple[Any, ...], new: Any) -> None:
    for part in path[:-1]:
        obj = obj[part]
    obj[path[-1]] = new


def _good(store: Store, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    store.client.flushall()
    prev = advance(store, "u0", None, "welcome")
    prev = advance(store, "u0", prev, "ask_size")
    advance(store, "u0", prev, "ask_qty")
    out = tmp_path / "good.jsonl"
    backup(store, out)
    store.client.flushall()
    return out, json.loads(out.read_text().splitlines()[1])


def _restore_or_refuse(store: Store, path: Path) -> None:
    store.client.flushall()
    try:
        restore(store, path)
    except BackupError as exc:
        assert str(exc), "a refusal says what is wrong"
        assert store.client.dbsize() == 0, f"a refused backup wrote something: {store.client.keys('*')}"
        return
    # accepted: what was restored must be a session the store itself accepts
    state = store.load("u0")
    assert state is not None and state["version"] == len(store.history("u0")) >= 1


@SETTINGS
@given(data=st.data())
def test_a_re_checksummed_line_with_any_value_anywhere(data: st.DataObject, store: Store, tmp_path: Path) -> None:
    good, line = _good(store, tmp_path)
    places = [p for p in _paths(line) if p and p[0] != "sum"]
    where = data.draw(st.sampled_from(places))
    new = data.draw(JSON_VALUE)

    def edit(obj: dict[str, Any]) -> None:
        _set(obj, where, new)

    _restore_or_refuse(store, _rewrite(good, tmp_path / "crafted.jsonl", edit))


@SETTINGS
@given(data=st.data())
def test_changed_bytes_are_refused(data: st.DataObject, store: Store, tmp_path: Path) -> None:
    good, _ = _good(store, tmp_path)
    raw = bytearray(good.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255).filter(lambda b, old=raw[at]: b != old))
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(bytes(raw))
    _restore_or_refuse(store, damaged)


def test_a_non_finite_number_in_a_line_is_refused(store: Store, tmp_path: Path) -> None:
    # Python's json reads NaN and Infinity, which no checksum can be computed over
    good, _ = _good(store, tmp_path)
    header, first, *rest = good.read_text().splitlines()
    for token in ("NaN", "Infinity", "-Infinity"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text("\n".join([header, first.replace('"version":3}', f'"version":{token}}}', 1), *rest]) + "\n")
        assert f'"version":{token}}}' in bad.read_text()
        _restore_or_refuse(store, bad)
