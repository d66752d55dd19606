"""The numbers file: which flows each WhatsApp number runs, how sessions are keyed per
number, and errors that point at the line to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowkit.channels.whatsapp.numbers import Numbers, load_numbers, numbers_from_env, parse_numbers
from flowkit.errors import ConfigError, NumbersError
from flowkit.runtime.sender import Pacers

ROOT = Path(__file__).resolve().parents[2]
SALES, SUPPORT = "111000111000", "222000222000"
GOOD = f"""\
numbers:
  "{SALES}":
    name: Sales
    flows: [order_pizza, feedback]
    rate: 20
  {SUPPORT}:
    flows: [support_triage]
"""


def test_a_numbers_file_lists_each_numbers_flows_rate_and_name() -> None:
    n = parse_numbers(GOOD, "numbers.yaml")
    assert [x.id for x in n.numbers] == [SALES, SUPPORT]  # an unquoted id reads as the same text
    sales, support = n.numbers
    assert (sales.name, sales.flows, sales.rate) == ("Sales", ("order_pizza", "feedback"), 20.0)
    assert (support.name, support.flows, support.rate) == (None, ("support_triage",), None)
    assert n.primary == sales and n.ids == {SALES, SUPPORT} and sales.label == f"{SALES} (Sales)"
    n.check_flows(["order_pizza", "feedback", "support_triage", "refund"])  # all loaded: no error


def test_the_primary_number_keeps_bare_user_ids_and_others_name_their_number() -> None:
    n = parse_numbers(GOOD)
    assert n.session_id(SALES, "31612345678") == "31612345678"  # existing sessions keep working
    assert n.session_id(SUPPORT, "31612345678") == f"31612345678@{SUPPORT}"
    assert n.address("31612345678") == (SALES, "31612345678")
    assert n.address(f"31612345678@{SUPPORT}") == (SUPPORT, "31612345678")
    # a business-scoped user id, and a number no longer configured: still its own number
    assert n.address(f"US.13491208655302741918@{SUPPORT}") == (SUPPORT, "US.13491208655302741918")
    assert n.address("31612345678@999") == ("999", "31612345678")
    assert n.flows_for("31612345678") == {"order_pizza", "feedback"}
    assert n.flows_for(f"31612345678@{SUPPORT}") == {"support_triage"}
    assert n.flows_for("31612345678@999") is None  # not configured (any more): no restriction
    assert (n.rate_for("31612345678"), n.rate_for(f"x@{SUPPORT}")) == (20.0, None)
    assert n.accepts(SUPPORT) and not n.accepts("999") and not n.accepts(None)


def test_without_numbers_every_number_is_accepted_and_sessions_are_bare_user_ids() -> None:
    n = Numbers()
    assert n.accepts("anything") and n.primary is None
    assert n.session_id("123", "316") == "316" and n.address("316") == (None, "316")
    assert n.flows_for("316") is None


def test_the_environment_gives_the_file_else_whatsapp_phone_number_id_in_order(tmp_path: Path) -> None:
    path = tmp_path / "numbers.yaml"
    path.write_text(GOOD)
    primary = numbers_from_env(environ={"FLOWKIT_NUMBERS": str(path)}).primary
    assert primary is not None and primary.id == SALES
    assert numbers_from_env(path, environ={}).source == str(path)
    listed = numbers_from_env(environ={"WHATSAPP_PHONE_NUMBER_ID": " 333, 111 ,333,"})
    assert [x.id for x in listed.numbers] == ["333", "111"] and listed.numbers[0].flows is None
    assert numbers_from_env(environ={}).numbers == ()


@pytest.mark.parametrize(("text", "where", "says"), [
    ("numbers:\n  '+31 6 1234': {flows: [a]}\n", ":2:3:", "is not a phone number id"),
    ("numbers:\n  '111':\n    flow: [a]\n", ":3:5:", "unknown key 'flow' for number 111; use flows, rate or name"),
    ("numbers:\n  '111': {flows: order_pizza}\n", ":2:18:", "must be a non-empty list of flow names"),
    ("numbers:\n  '111': {flows: []}\n", ":2:18:", "must be a non-empty list"),
    ("numbers:\n  '111': {flows: [a, a]}\n", ":2:22:", "flow 'a' is listed twice"),
    ("numbers:\n  '111': {flows: [3]}\n", ":2:19:", "a flow name of number 111 must be text"),
    ("numbers:\n  '111': {rate: 0}\n", ":2:17:", "must be a positive number of messages per second"),
    ("numbers:\n  '111': {rate: fast}\n", ":2:17:", "not 'fast'"),
    ("numbers:\n  '111': {name: [x]}\n", ":2:17:", "`name` of number 111 must be text"),
    ("numbers:\n  '111': [a]\n", ":2:10:", "must be a mapping (flows, rate, name)"),
    ("numbers: [111]\n", ":1:10:", "must map each phone number id to its settings"),
    ("numbers: {}\n", ":1:10:", "must map each phone number id"),
    ("phones:\n  '111': {}\n", ":1:1:", "unknown key 'phones'"),
    ("- 111\n", ":1:1:", "must be a mapping with a `numbers:` key"),
    ("", ":1:1:", "the numbers file is empty"),
    ("numbers:\n  '111': {flows: [a}\n", ":2:", "YAML syntax error"),
    ("numbers:\n  '111': {}\n  '111': {}\n", ":3:4:", "duplicate key '111' (first defined at line 2)"),
])
def test_a_bad_numbers_file_says_where_and_what_to_fix(text: str, where: str, says: str) -> None:
    with pytest.raises(NumbersError) as err:
        parse_numbers(text, "numbers.yaml")
    assert isinstance(err.value, ConfigError)  # a configuration error: commands exit 2 with it
    assert any(where in str(p) and says in str(p) and str(p).startswith("numbers.yaml:") for p in err.value.problems), \
        [str(p) for p in err.value.problems]


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(NumbersError) as err:
        parse_numbers("numbers:\n  'abc': {}\n  '111': {rate: -1, colour: red}\n")
    assert len(err.value.problems) == 3 and str(err.value).startswith("3 problems in the numbers file:")


def test_flows_a_number_runs_must_be_loaded_and_the_error_names_them() -> None:
    n = parse_numbers(GOOD, "numbers.yaml")
    with pytest.raises(NumbersError) as err:
        n.check_flows(["order_pizza", "support_triage"])
    [problem] = err.value.problems
    assert str(problem) == (f"numbers.yaml:4:26: number {SALES} (Sales) runs flow 'feedback', which is not loaded "
                            "(loaded: order_pizza, support_triage); fix the name or load that flow [unknown-flow]")


def test_an_unreadable_or_huge_numbers_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NumbersError, match="cannot read the numbers file: .*check --numbers / FLOWKIT_NUMBERS"):
        load_numbers(tmp_path / "missing.yaml")
    huge = tmp_path / "huge.yaml"
    huge.write_text("numbers:\n" + "#" * 300_000)
    with pytest.raises(NumbersError, match="is over 262144 bytes"):
        load_numbers(huge)


def test_each_number_has_its_own_pacer_and_a_pause_stays_on_its_number() -> None:
    n = parse_numbers(GOOD)
    pacers = Pacers(80.0)
    sales, support = pacers.for_session("316", n), pacers.for_session(f"316@{SUPPORT}", n)
    assert sales is not support and support is pacers.for_session(f"317@{SUPPORT}", n)
    assert sales.interval == pytest.approx(1 / 20) and support.interval == pytest.approx(1 / 80)
    support.pause(60)  # Graph said 429 for the support number
    assert support.slot() > 50 and sales.slot() < 1  # the sales number keeps sending
    assert pacers.for_session("316", None) is pacers.default
    primary_at_default = Pacers(80.0)
    assert primary_at_default.for_session("316", parse_numbers(f"numbers:\n  '{SALES}': {{}}\n")) \
        is primary_at_default.default


def _flowkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    flowkit = Path(sys.executable).with_name("flowkit")
    return subprocess.run([str(flowkit), *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=env)


def test_serve_and_worker_refuse_a_numbers_file_naming_an_unknown_flow(tmp_path: Path) -> None:
    path = tmp_path / "numbers.yaml"
    path.write_text(f"numbers:\n  '{SALES}':\n    flows: [order_pizza, pizzza]\n")
    for command in ("serve", "worker"):
        done = _flowkit(command, "examples/flows", "--numbers", str(path))
        assert done.returncode == 2, done.stderr
        assert f"{path}:3:26: number {SALES} runs flow 'pizzza', which is not loaded" in done.stderr, done.stderr


def test_an_id_only_whatsapp_phone_number_id_lists_is_warned_about(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "numbers.yaml"
    path.write_text(f"numbers:\n  '{SALES}':\n    flows: [order_pizza]\n")
    env = dict(os.environ, WHATSAPP_PHONE_NUMBER_ID=f"{SALES},333", FLOWKIT_REDIS_URL=redis_url)
    done = _flowkit("worker", "examples/flows", "--numbers", str(path), "--once", "--no-send", env=env)
    assert done.returncode == 0, done.stderr
    assert f"warning: WHATSAPP_PHONE_NUMBER_ID lists 333, which {path} does not" in done.stderr, done.stderr
