"""`flowkit serve --workers 2`: two processes share the port, each builds its own app, both
take messages, no update is lost or applied twice, a worker that dies is replaced, and SIGTERM
to the supervisor ends them all."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from pathlib import Path

import httpx
import psutil

from flowkit.channels.whatsapp.payloads import text_payload
from flowkit.store import Store
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.runtime.webutil import signed, start_serve
from tests.waiting import DEADLINE, stop, wait_for

USERS = 12
MESSAGES = 8  # per user, after the start


def _workers(proc: psutil.Process) -> list[psutil.Process]:
    """The live serving processes under the supervisor (uvicorn's spawn start method adds a
    resource tracker, which serves nothing; a killed worker is a zombie until it is reaped)."""
    out = []
    for c in proc.children():
        try:
            if c.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(c.cmdline()):
                out.append(c)
        except psutil.Error:  # gone meanwhile
            pass
    return out


def _handled_pids(log: Path) -> set[int]:
    pids = set()
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"event handled"' in line:
            pids.add(json.loads(line)["pid"])
    return pids


def test_two_workers_share_the_port_and_lose_nothing(redis_url: str, store: Store, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with FakeGraphAPI() as graph:
        port = free_port()
        proc = start_serve(redis_url, graph, port, log, "--workers", "2", flows="examples/tally.yaml",
                           env={"FLOWKIT_LOG_LEVEL": "info"})
        supervisor = psutil.Process(proc.pid)
        try:
            wait_for(lambda: len(_workers(supervisor)) == 2, "two worker processes")

            def user(i: int) -> None:
                wa = f"3170{i:07d}"
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE) as c:
                    # a new connection per message: the kernel hands each to either worker
                    for n, text in enumerate(["tally", *(f"m{k}" for k in range(MESSAGES))]):
                        body, headers = signed(text_payload(wa, text, message_id=f"wamid.w{wa}.{n}"))
                        for _ in range(2):  # and each delivered twice, as WhatsApp may
                            r = c.post("/webhook", content=body, headers={**headers, "connection": "close"})
                            assert r.status_code == 200, r.text

            threads = [threading.Thread(target=user, args=(i,)) for i in range(USERS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for i in range(USERS):
                state = store.load(f"3170{i:07d}")
                assert state is not None and state["slots"]["n"] == MESSAGES, state  # every update once
            # both serve: a worker still starting takes nothing yet, so probe until each has answered
            probe = iter(range(10_000))

            def both_served() -> bool:
                body, headers = signed(text_payload("31799999999", "tally", message_id=f"wamid.p{next(probe)}"))
                httpx.post(f"http://127.0.0.1:{port}/webhook", content=body, headers=headers, timeout=DEADLINE)
                return len(_handled_pids(log)) == 2

            wait_for(both_served, "both workers to handle messages", every=0.05)

            # a worker that dies is replaced
            first = _workers(supervisor)[0]
            first.kill()
            wait_for(lambda: first.pid not in {w.pid for w in _workers(supervisor)}
                     and len(_workers(supervisor)) == 2, "the dead worker to be replaced")
            workers = _workers(supervisor)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=DEADLINE)
            gone, alive = psutil.wait_procs(workers, timeout=DEADLINE)
            assert not alive, alive
        finally:
            # the supervisor passes SIGTERM on; a worker orphaned by a SIGKILL is killed here
            left = _workers(supervisor) if supervisor.is_running() else []
            stop(proc)
            for w in left:
                with contextlib.suppress(psutil.Error):
                    w.kill()
