"""The README's code cannot rot: its Python blocks run, and every `flowkit` command it shows exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from flowkit.channels.whatsapp.payloads import text_payload
from flowkit.cli import app as cli
from flowkit.store.server import free_port
from flowkit.testing.fake_graph import FakeGraphAPI
from tests.runtime.webutil import SECRET, TOKEN, signed
from tests.waiting import stop, wait_for

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_the_webhook_runner_example_serves_a_conversation(redis_url: str, tmp_path: Path) -> None:
    [code] = [b for b in blocks("python") if b.startswith("# app.py")]
    (tmp_path / "app.py").write_text(code)
    port = free_port()
    with FakeGraphAPI() as graph:
        env = dict(os.environ, FLOWKIT_REDIS_URL=redis_url, WHATSAPP_APP_SECRET=SECRET,
                   WHATSAPP_VERIFY_TOKEN=TOKEN, **graph.env())
        log = tmp_path / "uvicorn.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", str(tmp_path), "app:app",
                                     "--port", str(port)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"uvicorn exited:\n{log.read_text()}")
                try:
                    return httpx.get(f"{base}/readyz", timeout=30).status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(ready, "the README's app to become ready", timeout=180, every=0.1)
            for i, text in enumerate(["pizza", "small", "1", "12 Main Street"]):
                body, headers = signed(text_payload("31611111111", text, message_id=f"wamid.readme.{i}"))
                assert httpx.post(f"{base}/webhook", content=body, headers=headers, timeout=30).status_code == 200

            def texts() -> list[str]:
                return [m.payload.get("text", {}).get("body", "") for m in graph.to("31611111111")]

            wait_for(lambda: texts() and texts()[-1].startswith("Order ORD-"), "the order confirmation")
            assert texts()[-1].startswith("Order ORD-31611111111-"), texts()
            assert "flowkit_messages_total" in httpx.get(f"{base}/metrics", timeout=30).text
        finally:
            stop(proc)


def test_every_flowkit_command_in_the_readme_exists() -> None:
    commands = set()
    for block in blocks("sh") + blocks("text"):
        for line in block.splitlines():
            m = re.match(r"^\$?\s*flowkit\s+([a-z-]+)(?:\s+([a-z-]+))?", line.strip())
            if m:
                commands.add(m.group(1))
    assert commands, "the README shows no flowkit commands"
    runner = CliRunner()
    for name in sorted(commands):
        r = runner.invoke(cli, [name, "--help"])
        assert r.exit_code == 0, f"`flowkit {name}` from the README: {r.output}"


# the tour simulates 2000 users and analyses them: minutes on a busy 2-core machine, where the
# suite-wide 300 s bound cut it off; this bounds a hang only
@pytest.mark.timeout(2400)
def test_the_tour_runs(redis_url: str, redis_client: object, tmp_path: Path) -> None:
    """Every `flowkit` line of the 5-minute tour, in order, against the test Redis. Left out:
    `redis start/stop` (the embedded server; tests/cli/test_store_cmds.py runs them) and
    `dashboard` (a long-running server; tests/dashboard/test_e2e.py runs it)."""
    import shlex

    [tour] = [b for b in blocks("sh") if b.startswith("# tour")]
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "out").mkdir()
    exe = Path(sys.executable).parent / "flowkit"
    env = dict(os.environ, FLOWKIT_REDIS_URL=redis_url)
    ran = []
    outputs: list[tuple[str, str]] = []
    for line in tour.splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0] != "flowkit" or words[1] in ("redis", "dashboard"):
            continue
        r = subprocess.run([str(exe), *words[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        allowed = (0, 1) if words[1] == "analyze" else (0,)  # analyze exits 1 when it finds anomalies
        assert r.returncode in allowed, f"{line}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        ran.append(words[1])
        if words[1:3] == ["session", "transcript"]:  # the README shows its first lines
            [shown] = [b for b in blocks("text") if b.startswith(f"session {words[3]}:")]
            head = shown.split("...")[0].splitlines()
            assert r.stdout.splitlines()[:len(head)] == head, r.stdout
        outputs.append((line, r.stdout))
    assert ran == ["lint", "render", "simulate", "check", "test", "test", "session", "session", "export", "analyze",
                   "analytics", "simulate", "export", "analytics", "test"]
    [ab] = [out for line, out in outputs if "-t experiments" in line]
    assert "wording" in ab and "short" in ab and "long" in ab and "p_value" in ab
    assert (tmp_path / "out" / "order_pizza.svg").exists() and (tmp_path / "out" / "history").is_dir()


def test_the_lint_example_is_what_flowkit_prints() -> None:
    [block] = [b for b in blocks("text") if b.startswith("$ flowkit lint broken.yaml")]
    r = subprocess.run([str(Path(sys.executable).parent / "flowkit"), "lint", "broken.yaml"],
                       cwd=ROOT / "tests" / "flow" / "broken", capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert (r.stdout + r.stderr).splitlines() == block.splitlines()[1:]


def test_the_handoff_tour_runs(redis_url: str, redis_client: object) -> None:
    """Every line of the hand-off block, against a user the runtime handed to people, sending
    through the Graph API imitation."""
    import shlex

    from flowkit.channels.whatsapp import WhatsAppSender
    from flowkit.engine import UserMessage
    from flowkit.flow import load_flows
    from flowkit.runtime import Runtime, WhatsAppChannel
    from flowkit.store import Store

    [block] = [b for b in blocks("sh") if b.startswith("# hand-off")]
    who, other = "31612345678", "31687654321"
    with FakeGraphAPI() as graph:
        sender = WhatsAppSender(config=graph.config(), max_attempts=1)
        rt = Runtime(Store(redis_client), load_flows(ROOT / "examples" / "flows"), channel=WhatsAppChannel(sender))
        for i, text in enumerate(["support", "other", "5"]):
            rt.handle(who, UserMessage(text=text, message_id=f"wamid.readme.handoff.{i}"))
        sender.close()
        assert rt.store.load(who)["status"] == "handoff"
        env = dict(os.environ, FLOWKIT_REDIS_URL=redis_url, FLOWKIT_FLOWS="examples/flows", **graph.env())
        ran = []
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            r = subprocess.run([str(Path(sys.executable).parent / "flowkit"), *words[1:]], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, f"{line}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
            ran.append(r.stdout)
        assert who in ran[0] and "support_triage" in ran[1]
        texts = [m.text for m in graph.to(who)]
        assert texts[-2:] == ["Hi, this is Ana. Let me check.", "Tell us what happened in a few words."]
        assert [m.type for m in graph.to(other)] == ["template"]
        assert rt.store.load(who)["step"] == "ask_details" and rt.store.load(other)["flow"] == "support_triage"
