"""Conversation stories: parsed with located problems, run through the real runtime on a real
Redis, failures shown turn by turn; `flowkit test --stories` exit codes; the pytest plugin
collecting `*.stories.yaml` in a real pytest subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flowkit.cli import app
from flowkit.errors import StoryError
from flowkit.flow import load_flows
from flowkit.runtime import FlowRegistry, RecordingChannel, Runtime
from flowkit.store import Store
from flowkit.store import keys as K
from flowkit.testing import load_stories, parse_stories, run_stories
from flowkit.testing.coverage import TEST_EPOCH_MS, _Clock
from tests.runtime.conftest import ROOT

FLOWS = ROOT / "examples" / "flows"
EXAMPLE = ROOT / "examples" / "stories" / "appointment.stories.yaml"
REGISTRY = FlowRegistry(load_flows(FLOWS).values())
runner = CliRunner()


def stories_of(text: str) -> list[Any]:
    return parse_stories(textwrap.dedent(text), "s.yaml")[0]


def problems_of(text: str) -> list[str]:
    with pytest.raises(StoryError) as exc:
        parse_stories(textwrap.dedent(text), "s.yaml")
    return [str(p) for p in exc.value.problems]


# ---------------------------------------------------------------- parsing


def test_the_issue_form_parses() -> None:
    (story,) = stories_of("""\
        stories:
          - name: books a checkup
            turns:
              - {user: clinic, bot: "What is the visit for?"}
              - {user: checkup, bot: "Patient age?"}
            slots: {visit: checkup}
            status: waiting_input
        """)
    assert story.name == "books a checkup" and story.line == 2
    assert [(t.action, t.value, t.line) for t in story.turns] == [("user", "clinic", 4), ("user", "checkup", 5)]
    assert [(e.mode, e.text) for e in story.turns[0].expect] == [("contains", "What is the visit for?")]
    assert story.slots == {"visit": "checkup"} and story.status == "waiting_input"


def test_every_problem_is_located_and_reported_at_once() -> None:
    found = problems_of("""\
        stories:
          - name: one
            turns:
              - {user: hi, tap: Yes}
              - {user: hi, bott: x}
              - {wait: soon}
              - {user: hi, bot_regex: "(a)\\\\1"}
              - {user: hi, silent: true, bot: x}
            status: finished
          - turns: []
          - name: one
            turns: [{user: x}]
          - name: one
            turns: [{user: x}]
        """)
    text = "\n".join(found)
    assert "s.yaml:4:9: a turn of story 'one' does exactly one of user, tap, start, wait; this one has user, tap" in text
    assert "s.yaml:5:20: unknown key 'bott' in a turn of story 'one' (did you mean 'bot'?)" in text
    assert "s.yaml:6:" in text and "wait: bad duration" in text
    assert "s.yaml:7:" in text and "bot_regex:" in text and "RE2" in text
    assert "s.yaml:8:" in text and "cannot expect silence and a bot message" in text
    assert "s.yaml:9:" in text and "status 'finished' is not one of" in text
    assert "s.yaml:10:" in text and "needs a `name:`" in text
    assert "two stories are named 'one'" in text


def test_yaml_errors_and_empty_files_are_located() -> None:
    assert problems_of("stories:\n  - name: [x\n")[0].startswith("s.yaml:3:1: not valid YAML")
    assert "the stories file is empty" in problems_of("")[0]
    assert "must be a non-empty list" in problems_of("stories: {}\n")[0]


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    f = tmp_path / "big.stories.yaml"
    f.write_bytes(b"#" * (3 * 1024 * 1024))
    with pytest.raises(StoryError, match="split it into several files"):
        load_stories(f)


# ---------------------------------------------------------------- running


def test_the_example_stories_pass_through_the_real_runtime(store: Store) -> None:
    stories, settings = load_stories(EXAMPLE)
    report = run_stories(REGISTRY, store, stories)
    assert report.ok, report.text()
    assert len(report.results) == 4 and settings["flows"] == ["../flows"]
    booked = report.results[0]
    assert [len(t.sent) for t in booked.turns] == [2, 1, 1, 1, 1, 1, 1]
    # the stories took real edges, and the report names the ones no story took
    assert any(e.source == "ask_day" and e.label == "retry" for e in report.covered)
    assert "book_appointment: contact -> handoff [on_fail]" in report.text()
    assert "flows no story enters: feedback, order_pizza, refund, support_triage" in report.text()
    assert not list(store.client.scan_iter(match="*fkstory*")), "story sessions are deleted afterwards"


def test_a_failing_story_shows_every_turn_with_a_diff(store: Store) -> None:
    stories = stories_of("""\
        stories:
          - name: wrong expectations
            turns:
              - {user: book, bot: "Which service do you want?"}
              - {tap: Dental, bot_exact: "Which day?"}
              - {tap: Tomorrow}
              - {user: "2026-12-01", bot_regex: "^What time", slots: {service: checkup}}
            slots: {day: "2026-12-02", patient: Ada}
            status: completed
        """)
    report = run_stories(REGISTRY, store, stories)
    assert not report.ok
    (res,) = report.failed
    t1, t2, t3, t4 = res.turns
    assert "expected a message containing 'Which service do you want?'; nearest:" in t1.problems[0]
    assert "- Which service do you want?" in t1.problems[0] and "+ Which service do you need?" in t1.problems[0]
    assert "expected a message that is exactly 'Which day?'" in t2.problems[0]
    assert t3.problems == ["the bot's last messages offer no button or row 'Tomorrow' (they offer nothing)"]
    assert t4.passed is False and t4.problems == ["slot 'service' is 'dental'; expected 'checkup'"]
    assert res.problems == ["slot 'day' is '2026-12-01'; expected '2026-12-02'", "slot 'patient' is unset; expected 'Ada'",
                            "status is 'waiting_input'; expected 'completed'"]
    text = res.text()
    assert "turn 2 (line 5) tap: 'Dental'  <-- FAILED" in text
    assert "bot: 'What time on 2026-12-01?' [09:00 | 11:00 | 14:00 | 16:00]" in text


def test_tap_uses_ids_or_titles_of_what_the_bot_offered(store: Store) -> None:
    stories = stories_of("""\
        stories:
          - name: taps
            turns:
              - {user: book}
              - {tap: dental, bot: "Which day?"}
              - {user: "2026-12-01"}
              - {tap: "09:00", bot: "full name", slots: {service: dental, slot_time: "09:00"}}
        """)
    report = run_stories(REGISTRY, store, stories, keep=True)
    assert report.ok, report.text()
    sid = report.results[0].session_id
    inputs = [json.loads(r["input"]) for r in store.history(sid) if r.get("input")]
    assert {"type": "list_reply", "text": "Dental", "reply_id": "dental"} in inputs
    assert inputs[-1]["type"] == "list_reply" and inputs[-1]["reply_id"] == "09:00"


def test_wait_fires_only_this_sessions_timeouts(store: Store) -> None:
    # another session on the same Redis is due long before the story's virtual clock: not ours to fire
    clock = _Clock(TEST_EPOCH_MS - 10 * 3_600_000)
    rt = Runtime(store, REGISTRY, channel=RecordingChannel(), clock=clock)
    from flowkit.engine import UserMessage

    rt.handle("bystander", UserMessage(text="book", message_id="b1"))
    before = store.load("bystander")
    stories = stories_of("""\
        stories:
          - name: expires
            turns:
              - {user: book}
              - {wait: 30m, silent: true}
              - {wait: 31m, bot: "period of inactivity", status: expired}
        """)
    report = run_stories(REGISTRY, store, stories)
    assert report.ok, report.text()
    assert store.load("bystander") == before
    assert "bystander" in store.due_timeouts(TEST_EPOCH_MS, 100)


def test_service_stubs_return_or_raise_and_the_history_is_checked(store: Store) -> None:
    stories = stories_of("""\
        services: {calendar.reserve: BK-7}
        stories:
          - name: booked with the file's stub
            turns: &t
              - {user: book}
              - {tap: Dental}
              - {user: "2026-12-01"}
              - {tap: "09:00"}
              - {user: Ada Lovelace}
              - {user: ada@example.com}
              - {tap: "Yes"}
            slots: {booking_ref: BK-7}
            status: completed
          - name: the story's own stub fails the call
            services: {calendar.reserve: {raises: taken}}
            turns: *t
            step: ask_time
        """)
    report = run_stories(REGISTRY, store, stories)
    assert report.ok, report.text()


def test_flowkit_test_stories_exit_codes_and_json(redis_url: str, redis_client: Any, tmp_path: Path) -> None:
    ok = runner.invoke(app, ["test", "--stories", str(EXAMPLE), "--redis", redis_url])
    assert ok.exit_code == 0, ok.output
    assert "4/4 stories passed" in ok.output
    bad = tmp_path / "bad.stories.yaml"
    bad.write_text(f"flows: {FLOWS}\nstories:\n  - name: nope\n    turns: [{{user: book, bot: Goodbye}}]\n")
    failed = runner.invoke(app, ["test", "--stories", str(bad), "--redis", redis_url, "--format", "json"])
    assert failed.exit_code == 1, failed.output
    data = json.loads(failed.stdout)  # stderr carries the log lines
    assert data["ok"] is False and data["stories"][0]["turns"][0]["problems"][0].startswith(
        "expected a message containing 'Goodbye'")
    broken = tmp_path / "broken.stories.yaml"
    broken.write_text("stories:\n  - name: x\n    turns: [{say: hi}]\n")
    r = runner.invoke(app, ["test", str(FLOWS), "--stories", str(broken), "--redis", redis_url])
    assert r.exit_code == 2 and "broken.stories.yaml:3:14: unknown key 'say'" in r.output
    assert not redis_client.keys(K.STATE_PATTERN)


def pytest_run(path: Path, redis_url: str) -> tuple[int, str]:
    env = {**os.environ, "FLOWKIT_REDIS_URL": redis_url}
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "flowkit.testing.pytest_plugin", "-p", "no:cacheprovider",
                        "-q", str(path)], cwd=path, env=env, capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


def test_pytest_collects_story_files_through_the_plugin(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "ok.stories.yaml").write_text(EXAMPLE.read_text().replace("flows: ../flows", f"flows: {FLOWS}"))
    (tmp_path / "bad.stories.yaml").write_text(
        f"flows: {FLOWS}\nstories:\n  - name: expects a goodbye\n    turns:\n      - {{user: book, bot: Goodbye}}\n")
    code, out = pytest_run(tmp_path, redis_url)
    assert code == 1, out
    assert "1 failed, 4 passed" in out
    assert "story 'expects a goodbye'" in out and "turn 1 (line 5) user: 'book'  <-- FAILED" in out
    assert "expected a message containing 'Goodbye'" in out


def test_the_plugin_reports_a_broken_story_file_as_a_located_collection_error(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "broken.stories.yaml").write_text("stories: [{name: x, turns: [{hello: there}]}]\n")
    code, out = pytest_run(tmp_path, redis_url)
    assert code == 2, out
    assert "broken.stories.yaml:1:30: unknown key 'hello'" in out
    (tmp_path / "broken.stories.yaml").write_text("stories: [{name: x, turns: [{user: hi}]}]\n")
    code, out = pytest_run(tmp_path, redis_url)
    assert code == 2 and "no flows: write `flows: PATH`" in out, out


def test_the_readme_story_runs(store: Store) -> None:
    text = (ROOT / "README.md").read_text()
    [block] = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:] if "stories:" in b.split("```", 1)[0]]
    stories, settings = parse_stories(block, "README.md")
    assert settings["flows"] == ["../flows"]
    report = run_stories(REGISTRY, store, stories)
    assert report.ok, report.text()
