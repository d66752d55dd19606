"""The content hash of a flow version: the same for the same meaning however it is written
(YAML or JSON, key order, comments, quoting, shorthands, spacing in expressions), different
as soon as the meaning changes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from flowkit.flow import load_flow, parse_flow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
FILES = sorted(EXAMPLES.glob("*.yaml"))

BASE = textwrap.dedent("""\
    flow: shop
    version: "1"
    start: ask_size
    timeout: 30m
    slots:
      size: {type: choice, options: [small, large]}
      qty: {type: int, min: 1, max: 9}
      total: number
    steps:
      ask_size:
        ask: "Size, {{ profile.name or 'friend' }}?"
        input: {type: choice, options: [small, large]}
        save: size
        next:
          - if: "size == 'large'"
            goto: ask_qty
          - goto: done
      ask_qty:
        ask: How many?
        input: {type: int, min: 1, max: 9}
        save: qty
        retries: 2
        next: price
      price:
        set: {total: "qty * 10", qty: "qty + 1"}
        next: done
      done:
        say: "Total {{ total or 0 }}"
        end: completed
    """)


def h(text: str, file: str = "f.yaml") -> str:
    return parse_flow(text, file).content_hash


BASE_HASH = h(BASE)


def test_hash_is_sha256_hex() -> None:
    assert len(BASE_HASH) == 64 and int(BASE_HASH, 16) >= 0
    assert parse_flow(BASE).version_id == "1"
    assert parse_flow(BASE.replace('version: "1"\n', "")).version_id == BASE_HASH[:12]


def test_pinned_value_for_a_tiny_flow() -> None:
    # Sessions are pinned to this hash: a change of the canonical form would orphan them.
    tiny = "flow: t\nstart: a\nsteps:\n  a: {end: completed}\n"
    assert h(tiny) == "9bb7c99ee4f36ff44058eadb0334bbbb916f0b34ed123fe3e67ff19a4e9b2a3e"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_yaml_and_json_of_the_same_flow_hash_the_same(path: Path, tmp_path: Path) -> None:
    flow = load_flow(path)
    data = yaml.safe_load(path.read_text())
    as_json = tmp_path / (path.stem + ".json")
    as_json.write_text(json.dumps(data, indent=4))
    assert load_flow(as_json).content_hash == flow.content_hash
    compact = tmp_path / (path.stem + "-compact.json")
    compact.write_text(json.dumps(data, separators=(",", ":")))
    assert load_flow(compact).content_hash == flow.content_hash
    assert parse_flow(flow.to_json(), "x.json").content_hash == flow.content_hash


def _reorder(value: object) -> object:
    if isinstance(value, dict):
        return {k: _reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reorder(v) for v in value]
    return value


def test_reordered_keys_everywhere_hash_the_same() -> None:
    data = yaml.safe_load(BASE)
    # `set` assigns in order, so only reverse the rest
    reordered = _reorder(data)
    reordered["steps"]["price"]["set"] = data["steps"]["price"]["set"]
    assert list(reordered) != list(data)
    assert h(yaml.safe_dump(reordered, sort_keys=False)) == BASE_HASH


@pytest.mark.parametrize("variant", [
    BASE.replace("flow: shop\n", "# a comment\nflow: shop   # trailing comment\n\n\n"),
    BASE.replace("    ask: How many?\n", "    ask: 'How many?'\n"),
    BASE.replace("    ask: How many?\n", '    ask: >-\n      How\n      many?\n'),
    BASE.replace("timeout: 30m", "timeout: 1800").replace("timeout: 1800", "timeout: 0.5h".replace("0.5h", "1800s")),
    BASE.replace("timeout: 30m", 'timeout: "30m"'),
    BASE.replace("    retries: 2\n", ""),
    BASE.replace('version: "1"', "version: 2"),
    BASE.replace("  total: number", "  total: {type: number}"),
    BASE.replace("min: 1, max: 9}\n    save", "min: 1.0, max: 9.0}\n    save"),
    BASE.replace("    next: price\n", "    next: [price]\n"),
    BASE.replace("    next: price\n", "    next:\n      - goto: price\n"),
    BASE.replace("if: \"size == 'large'\"", "if: 'size==\"large\"'"),
    BASE.replace("set: {total: \"qty * 10\"", "set: {total: \"(qty)*10\""),
    BASE.replace("{{ profile.name or 'friend' }}", "{{profile.name   or   'friend'}}"),
    BASE.replace("steps:\n", "commands: {cancel: [cancel, stop]}\nsteps:\n"),
    BASE.replace("  size: {type: choice, options: [small, large]}\n  qty: {type: int, min: 1, max: 9}\n",
                 "  qty: {type: int, min: 1, max: 9}\n  size: {type: choice, options: [small, large]}\n"),
], ids=["comments", "quoting", "folded", "duration-seconds", "duration-quoted", "default-retries", "version-label",
        "slot-shorthand", "float-bounds", "next-list", "next-goto", "expr-spacing", "expr-parens", "template-spacing",
        "default-commands", "slot-order"])
def test_formatting_does_not_change_the_hash(variant: str) -> None:
    assert variant != BASE
    assert h(variant) == BASE_HASH


@pytest.mark.parametrize("variant", [
    BASE.replace("Total {{", "Sum {{"),
    BASE.replace("goto: ask_qty\n      - goto: done", "goto: done\n      - goto: ask_qty"),
    BASE.replace("if: \"size == 'large'\"", "if: \"size == 'small'\""),
    BASE.replace("set: {total: \"qty * 10\", qty: \"qty + 1\"}", "set: {qty: \"qty + 1\", total: \"qty * 10\"}"),
    BASE.replace("set: {total: \"qty * 10\"", "set: {total: \"qty * 10.0\""),
    BASE.replace("    retries: 2\n", "    retries: 3\n"),
    BASE.replace("input: {type: int, min: 1, max: 9}", "input: {type: int, min: 2, max: 9}"),
    BASE.replace("options: [small, large]}\n  qty", "options: [large, small]}\n  qty"),
    BASE.replace("end: completed", "end: failed"),
    BASE.replace("timeout: 30m", "timeout: 31m"),
    BASE.replace("flow: shop", "flow: shop2"),
    BASE.replace("steps:\n", "triggers: [shop]\nsteps:\n"),
    BASE.replace("  total: number", "  total: {type: number, sensitive: true}"),
], ids=["text", "targets", "condition", "set-order", "number-type", "retries", "input-min", "option-order",
        "end-status", "timeout", "name", "triggers", "sensitive"])
def test_meaning_changes_change_the_hash(variant: str) -> None:
    assert variant != BASE
    assert h(variant) != BASE_HASH


def test_hash_is_the_same_in_a_fresh_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    f = tmp_path / "shop.yaml"
    f.write_text(BASE)
    out = subprocess.run(
        [sys.executable, "-c", f"from flowkit.flow import load_flow; print(load_flow({str(f)!r}).content_hash)"],
        capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert out.stdout.strip() == BASE_HASH
