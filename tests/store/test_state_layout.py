"""The state JSON packed into 64-byte fields so the state hash stays listpack-encoded
(flowkit/store/statefield.py), and the old layout (the JSON in ``state``) still read."""

from __future__ import annotations

import random
import string
from typing import Any

from flowkit.store import Store, backup, restore
from flowkit.store import keys as K
from flowkit.store import statefield as SF
from flowkit.store.codec import canonical, checksum, dumps
from flowkit.testing.old_layout import old_commit
from tests.store.conftest import advance, make_record, make_state


def _fields(store: Store, sid: str) -> dict[str, bytes]:
    return SF.as_fields(store.client.hgetall(K.session_keys(sid).state).items())


def _encoding(store: Store, sid: str) -> bytes:
    return store.client.object("encoding", K.session_keys(sid).state)  # type: ignore[no-any-return]


def _noise(n: int, seed: int = 1) -> str:
    rnd = random.Random(seed)  # text deflate cannot shrink much
    return "".join(rnd.choice(string.ascii_letters + string.digits) for _ in range(n))


def test_a_committed_state_is_listpack_encoded_in_64_byte_fields(store: Store) -> None:
    s = advance(store, "u1", None, "welcome", name="Maria Jansen", comments=_noise(600))
    fields = _fields(store, "u1")
    chunks = [k for k in fields if SF.is_chunk(k)]
    assert len(chunks) > 5 and "state" not in fields
    assert all(len(fields[c]) <= SF.CHUNK for c in chunks)
    assert _encoding(store, "u1") == b"listpack"
    assert SF.state_text(fields) == canonical(s)
    assert store.load("u1") == s


def test_a_shrinking_state_leaves_no_stale_chunks(store: Store) -> None:
    s1 = advance(store, "u1", None, "welcome", comments=_noise(900))
    before = len([k for k in _fields(store, "u1") if SF.is_chunk(k)])
    s2 = advance(store, "u1", s1, "ask_size", comments="short")
    fields = _fields(store, "u1")
    after = [k for k in fields if SF.is_chunk(k)]
    assert len(after) < before and sorted(after) == sorted(SF.chunk_fields(len(after)))
    assert store.load("u1") == s2 and store.state_at("u1", 1) == s1


def test_a_state_too_big_for_a_listpack_goes_whole_into_one_field(store: Store) -> None:
    s = advance(store, "u1", None, "welcome", blob=_noise(SF.CHUNK * SF.MAX_CHUNKS * 2))  # (~6 bits a character deflated)
    fields = _fields(store, "u1")
    assert [k for k in fields if SF.is_chunk(k)] == ["s0"]
    assert store.load("u1") == s
    assert _encoding(store, "u1") == b"hashtable"
    s2 = advance(store, "u1", s, "ask_size", blob="small again")  # back to a listpack
    fields = _fields(store, "u1")
    assert sorted(k for k in fields if SF.is_chunk(k)) == sorted(SF.chunk_fields(len(fields) - 7))
    assert _encoding(store, "u1") == b"listpack" and store.load("u1") == s2


def test_the_old_layout_is_read_and_the_next_commit_packs_it(store: Store) -> None:
    """A session written by the previous flowkit (the whole JSON in ``state``, a hashtable)."""
    sid = "u1"
    s1 = make_state(sid, 1, "welcome")
    s1["slots"]["comments"] = _noise(300)
    assert old_commit(store.client, store.config, sid, 0, dict(s1), make_record(s1, None, event="start")) == "ok"
    # (a TTL left by a retention: an ended session keeps it across the rewrite)
    store.client.pexpire(K.session_keys(sid).state, 600_000)
    assert _encoding(store, sid) == b"hashtable" and "state" in _fields(store, sid)
    assert store.load(sid) == s1 and store.load_raw(sid) == s1
    s2 = advance(store, sid, s1, "done", status="completed")
    fields = _fields(store, sid)
    assert "state" not in fields and _encoding(store, sid) == b"listpack"
    assert store.client.pttl(K.session_keys(sid).state) > 0
    assert store.load(sid) == s2 and store.state_at(sid, 1) == s1
    assert [r["version"] for r in store.history(sid)] == [1, 2]


def test_the_old_field_wins_over_chunks(store: Store) -> None:
    """A hand edit (or a tool of the old layout) writing ``state`` is what the store reads."""
    advance(store, "u1", None, "welcome")
    store.client.hset(K.session_keys("u1").state, "state", '{"tampered": true}')
    assert store.load_raw("u1") == {"tampered": True}


def test_a_stale_previous_stores_the_whole_state(store: Store) -> None:
    """The script cannot unpack the packed state: it asks for the whole state (``rebase``)."""
    s1 = advance(store, "u1", None, "welcome")
    s2 = advance(store, "u1", s1, "ask_size", size="large")
    wrong = dict(s2, slots={"size": "small"})  # not what is stored, same version
    s3 = make_state("u1", 3, "ask_qty", slots={"size": "large", "qty": 2})
    assert store.commit("u1", 2, s3, make_record(s3, "ask_size"), previous=wrong).ok
    assert store.state_at("u1", 3) == s3 and store.state_at("u1", 2) == s2
    last = store.history("u1", with_delta=True)[-1]
    assert "r" in last["delta"]
    assert store.reconcile().fixed == 0


def test_a_conflict_returns_the_packed_current_state(store: Store) -> None:
    s1 = advance(store, "u1", None, "welcome", comments=_noise(400))
    s2 = advance(store, "u1", s1, "ask_size")
    s2b = make_state("u1", 2, "ask_qty")
    res = store.commit("u1", 1, s2b, make_record(s2b, "welcome"), previous=s1)
    assert res.outcome == "conflict" and res.current == s2


def test_backup_writes_the_old_field_and_restore_packs_it(store: Store, tmp_path: Any) -> None:
    s = advance(store, "u1", None, "welcome", comments=_noise(500))
    out = tmp_path / "b.jsonl"
    backup(store, out)
    assert '"state",' in out.read_text(encoding="utf-8")  # the file format is unchanged
    store.client.flushall()
    assert restore(store, out).restored == 1
    fields = _fields(store, "u1")
    assert "state" not in fields and _encoding(store, "u1") == b"listpack"
    assert SF.state_text(fields) == canonical(s) and store.load("u1") == s


def test_recovery_writes_the_packed_layout(store: Store) -> None:
    s1 = advance(store, "u1", None, "welcome")
    advance(store, "u1", s1, "ask_size")
    text = dumps(dict(s1, status="sleeping"))
    store.client.hset(K.session_keys("u1").state, mapping={"state": text, "checksum": checksum(text)})
    restored = store.load("u1")
    assert restored is not None and restored["version"] == 3
    fields = _fields(store, "u1")
    assert "state" not in fields and _encoding(store, "u1") == b"listpack" and store.load("u1") == restored


def test_pack_round_trips_and_only_deflates_when_it_pays() -> None:
    for text in (b"{}", canonical({"a": "b" * 500}), _noise(300).encode()):
        blob = SF.pack(text)
        assert SF.unpack(blob) == text and len(blob) <= len(text)
        assert b"".join(SF.split(blob)) == blob
    assert SF.unpack(b"z\x00garbage") == b"z\x00garbage"  # damaged: fails the checksum later
