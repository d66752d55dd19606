"""Every store operation, once, as a sans-io generator (the runtime's ``_process`` pattern).

Each ``yield`` hands the driver one batch of commands and gets their replies back; the
sync and async stores only differ in how they send a batch (:mod:`flowkit.store.driver`).
Reading an operation top to bottom shows exactly how many round trips it costs.

The operations live in modules named for what they hold, re-exported here (``ops.commit``,
``ops.load``, ... are the names the stores and tools use):

- :mod:`flowkit.store.replies`: error replies, reply shapes, the state hash's fields, history elements;
- :mod:`flowkit.store.indexcmds`: the derived-index and counter commands of a session;
- :mod:`flowkit.store.loading`: load, verify, recovery;
- :mod:`flowkit.store.commit_op`: the commit (one round trip; on a single server the script
  writes the derived indexes too, on a cluster they go beside it and are undone if it lost);
- :mod:`flowkit.store.timetravel`: history, state_at, diff, rollback, expiry;
- :mod:`flowkit.store.outbox_ops`: dedupe, the outbox, timeouts;
- :mod:`flowkit.store.index_reads`: reads over many sessions, deletion, ping.
"""

from __future__ import annotations

from flowkit.store.commit_op import (  # noqa: F401 - re-exported
    _not_applied,
    _send_commit,
    commit,
)
from flowkit.store.index_reads import (  # noqa: F401 - re-exported
    active_count,
    active_sessions,
    counters,
    delete_session,
    ping,
    quarantine_count,
    quarantined,
    read_histories,
    read_states,
)
from flowkit.store.indexcmds import (  # noqa: F401 - re-exported
    Triple,
    _counter_cmds,
    _index_cmds,
    _triple,
)
from flowkit.store.loading import (  # noqa: F401 - re-exported
    _recover,
    _valid,
    load,
    load_raw,
    replay_good,
    verify,
)
from flowkit.store.outbox_ops import (  # noqa: F401 - re-exported
    ack_commands,
    ack_effects,
    due_timeouts,
    next_timeout_at,
    pending_effects,
    seen,
    set_timeout,
    unacked_effects,
)
from flowkit.store.replies import (  # noqa: F401 - re-exported
    _bytes,
    as_int,
    check,
    decode_hist,
    entries,
    is_oom,
    pairs,
    read_hist,
    state_head,
)
from flowkit.store.timetravel import (  # noqa: F401 - re-exported
    _nothing,
    diff,
    diff_states,
    expire,
    history,
    rollback,
    state_at,
)

__all__ = [
    "Triple",
    "ack_commands",
    "ack_effects",
    "active_count",
    "active_sessions",
    "as_int",
    "check",
    "commit",
    "counters",
    "decode_hist",
    "delete_session",
    "diff",
    "diff_states",
    "due_timeouts",
    "entries",
    "expire",
    "history",
    "is_oom",
    "load",
    "load_raw",
    "next_timeout_at",
    "pairs",
    "pending_effects",
    "ping",
    "quarantine_count",
    "quarantined",
    "read_hist",
    "read_histories",
    "read_states",
    "replay_good",
    "rollback",
    "seen",
    "set_timeout",
    "state_at",
    "state_head",
    "unacked_effects",
    "verify",
]
