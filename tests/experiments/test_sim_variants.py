"""Per-variant personas: checked when configured, parsed from `flowkit simulate --variant`,
and applied only once the engine has assigned the variant."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowkit.engine import State
from flowkit.errors import ConfigError
from flowkit.sim import Persona, SimConfig
from flowkit.sim.variants import in_variant, parse_variant_options

ROOT = Path(__file__).resolve().parents[2]


def state(slots: dict[str, object]) -> State:
    return State(session_id="s", flow="f", flow_version="1", step="a", status="waiting_input", slots=slots,
                 pending={"wait": "input", "step": "a"})


def test_a_persona_changes_only_in_the_variant_it_names() -> None:
    p = Persona(abandon_rate=0.05, variants={"long": {"abandon_rate": 0.4, "invalid_rate": 0.3}})
    assert in_variant(p, state({})) is p
    assert in_variant(p, state({"experiments": {"wording": "short"}})) is p
    changed = in_variant(p, state({"experiments": {"wording": "long"}}))
    assert (changed.abandon_rate, changed.invalid_rate, changed.help_rate) == (0.4, 0.3, p.help_rate)


@pytest.mark.parametrize(("variants", "message"), [
    ({"long": {"abandon_rate": 1.5}}, "rates must be between 0 and 1: typical.long.abandon_rate=1.5"),
    ({"long": {"think_time": 3.0}}, "'think_time' is not a rate a variant can change"),
])
def test_bad_variant_rates_are_refused(variants: dict[str, dict[str, float]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SimConfig(personas=(Persona(variants=variants),))


def test_the_cli_option_parses_and_explains() -> None:
    assert parse_variant_options(["long:abandon_rate=0.3,invalid_rate=0.2", "short:help_rate=0"]) == {
        "long": {"abandon_rate": 0.3, "invalid_rate": 0.2}, "short": {"help_rate": 0.0}}
    for bad, why in (("long", "write VARIANT:RATE=VALUE"), ("long:abandon_rate", "needs =VALUE"),
                     ("long:abandon_rate=lots", "'lots' is not a number")):
        with pytest.raises(ConfigError, match=why):
            parse_variant_options([bad])


def test_simulate_refuses_a_bad_variant_option_with_exit_2(redis_url: str, redis_client: object) -> None:
    r = subprocess.run([str(Path(sys.executable).parent / "flowkit"), "simulate", str(ROOT / "examples" / "flows"),
                        "--users", "1", "--variant", "long:abandon_rate=2"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "FLOWKIT_REDIS_URL": redis_url})
    assert r.returncode == 2 and "typical.long.abandon_rate=2.0" in r.stderr and "Traceback" not in r.stderr
