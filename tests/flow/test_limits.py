"""`flowkit lint` refuses, with file:line, every message WhatsApp's Cloud API would refuse for
size or shape, and warns about templated texts that may outgrow a limit once filled in."""

from __future__ import annotations

import textwrap

import pytest

from flowkit.errors import FlowError, Problem
from flowkit.flow import parse_flow
from flowkit.flow.validate import flow_warnings


def flow_text(step: str, slots: str = "") -> str:
    """A flow whose step ``s`` is ``step`` (indented under it), then an end."""
    body = textwrap.indent(textwrap.dedent(step).strip("\n"), "    ")
    return (f"flow: f\nstart: s\n{slots}steps:\n  s:\n{body}\n    next: done\n"
            "  done:\n    end: completed\n")


def problems(step: str, slots: str = "") -> list[Problem]:
    with pytest.raises(FlowError) as info:
        parse_flow(flow_text(step, slots), "f.yaml")
    return info.value.problems


def limit_error(step: str, slots: str = "") -> Problem:
    found = problems(step, slots)
    assert [p.code for p in found] == ["whatsapp-limit"], "\n".join(map(str, found))
    return found[0]


def warnings(step: str, slots: str = "") -> list[Problem]:
    return flow_warnings(parse_flow(flow_text(step, slots), "f.yaml"))


LONG_TEXT = "x" * 4097


def test_text_over_4096_is_an_error_at_the_say_line() -> None:
    p = limit_error(f'say: "{LONG_TEXT}"')
    assert (p.file, p.line) == ("f.yaml", 5)
    assert "4097 characters; WhatsApp allows at most 4096" in p.message and "`say` of step 's'" in p.message


def test_text_of_exactly_4096_loads() -> None:
    parse_flow(flow_text(f'say: "{"x" * 4096}"'), "f.yaml")


def test_interactive_body_over_1024_with_buttons() -> None:
    p = limit_error(f"""
        say:
          text: "{'y' * 1025}"
          buttons: [A, B]
        """)
    assert p.line == 6 and "1025 characters; WhatsApp allows at most 1024" in p.message


def test_choice_question_over_1024_is_an_error_because_its_options_become_buttons() -> None:
    p = limit_error(f"""
        ask: "{'q' * 1025}"
        input: {{type: choice, options: [red, blue]}}
        """)
    assert "at most 1024" in p.message


def test_reprompt_with_default_apology_must_fit_too() -> None:
    # the question fits, but "Sorry, ..." + the question with the same buttons does not
    p = limit_error(f"""
        ask: "{'q' * 1010}"
        input: yes_no
        """)
    assert "at most 1024" in p.message


def test_duplicate_button_titles_and_ids() -> None:
    p = limit_error("""
        say:
          text: Pick
          buttons: [{id: a, title: Same}, {id: b, title: Same}]
        """)
    assert "button titles must be unique; repeated: 'Same'" in p.message
    p = limit_error("""
        say:
          text: Pick
          buttons: [{id: a, title: One}, {id: a, title: Two}]
        """)
    assert "button ids must be unique" in p.message


def test_button_id_over_256() -> None:
    p = limit_error(f"""
        say:
          text: Pick
          buttons: [{{id: "{'i' * 257}", title: One}}]
        """)
    assert "button 0 id is 257 characters" in p.message


def test_list_label_rows_descriptions_and_sections() -> None:
    assert "list button label is 21 characters" in limit_error("""
        say:
          text: Menu
          list: {button: "Choose one of these!!", rows: [a, b]}
        """).message
    assert "description is 73 characters" in limit_error(f"""
        say:
          text: Menu
          list: {{button: Go, rows: [{{id: a, title: A, description: "{'d' * 73}"}}]}}
        """).message
    assert "row titles must be unique" in limit_error("""
        say:
          text: Menu
          list: {button: Go, rows: [{id: a, title: Same}, {id: b, title: Same}]}
        """).message
    assert "section 1 title must be a non-empty string" in limit_error("""
        say:
          text: Menu
          list:
            button: Go
            sections:
              - {title: Hot, rows: [tea]}
              - {rows: [juice]}
        """).message
    assert "section 0 title is 25 characters" in limit_error(f"""
        say:
          text: Menu
          list:
            button: Go
            sections: [{{title: "{'s' * 25}", rows: [tea]}}]
        """).message


def test_header_and_footer_over_60() -> None:
    assert "header is 61 characters; WhatsApp allows at most 60" in limit_error(f"""
        say:
          text: Pick
          header: "{'h' * 61}"
          buttons: [A]
        """).message
    assert "footer is 61 characters" in limit_error(f"""
        ask:
          text: Sure?
          footer: "{'f' * 61}"
        input: yes_no
        """).message


def test_header_on_plain_text_and_caption_on_a_sticker_are_refused() -> None:
    assert "needs buttons, a list or a cta" in limit_error("""
        say: {text: Hi, header: Welcome}
        """).message
    assert "sticker message takes no caption" in limit_error("""
        say: {text: Hi, media: {type: sticker, id: "123"}}
        """).message
    assert "cannot go with a list" in limit_error("""
        say:
          text: Menu
          media: {type: image, url: "https://example.com/a.png"}
          list: {button: Go, rows: [a, b]}
        """).message


def test_cta_label_over_20() -> None:
    assert "call-to-action button text is 21 characters" in limit_error("""
        say:
          text: Track your order
          cta: {text: "Track my order please", url: "https://example.com/t"}
        """).message


def test_long_options_are_offered_whole_never_cut_into_colliding_titles() -> None:
    # Cutting these to 20 characters would make three equal button titles; they load
    # and are offered as a list (rows take 24) or numbered lines, never as cut titles.
    flow = parse_flow(flow_text("""
        ask: Which plan?
        input:
          type: choice
          options: [Premium plan monthly, Premium plan monthly+, Premium plan monthly++]
        """), "f.yaml")
    assert flow_warnings(flow) == []


def test_slot_max_lengths_bound_a_template_and_unbounded_ones_warn() -> None:
    slots = "slots:\n  code: {type: text, max_length: 30}\n  note: {type: text}\n"
    assert warnings("say:\n  text: \"Code {{ code }}\"\n  header: \"H {{ code }}\"\n  buttons: [A]\n", slots) == []
    [w] = warnings("say:\n  text: Hi\n  header: \"H {{ code }}{{ code }}\"\n  buttons: [A]\n", slots)
    assert w.code == "may-exceed-limit" and w.line == 9 and "header is 62 characters" in w.message
    [w] = warnings('say: "Note: {{ note }} / {{ profile.name }}"\n', slots)
    assert w.code == "unbounded-text" and "{{ note }}, {{ profile.name }}" in w.message


def test_a_static_overflow_inside_a_template_is_still_an_error() -> None:
    slots = "slots:\n  code: {type: text, max_length: 3}\n"
    p = limit_error(f'say: "{LONG_TEXT}{{{{ code }}}}"\n', slots)
    assert "at most 4096" in p.message


def test_location_question_with_a_footer_is_refused() -> None:
    # a location request carries no header or footer
    assert "header or footer needs buttons" in limit_error("""
        ask: {text: "Where are you?", footer: Thanks}
        input: location
        """).message


def test_the_readme_rich_message_example_lints_clean() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "  receipt:\n" in b]
    for nxt in ("pay", "where", "reminder"):
        block = block.replace(f"  {nxt}:\n", f"    next: {nxt}\n  {nxt}:\n")
    text = ("flow: r\nstart: receipt\nslots:\n  name: {type: text, max_length: 30}\n  ref: {type: text, max_length: 12}\n"
            f"steps:\n{block}    next: done\n  done:\n    end: completed\n")
    assert flow_warnings(parse_flow(text, "README.md")) == []


def test_new_message_fields_round_trip_through_yaml() -> None:
    flow = parse_flow(flow_text("""
        say:
          text: "Pay {{ who }}"
          header: Order
          footer: Thanks
          cta: {text: Pay, url: "https://pay.example.com/{{ who }}"}
        """, "slots:\n  who: {type: text, max_length: 5}\n"), "f.yaml")
    again = parse_flow(flow.to_yaml(), "again.yaml")
    assert again == flow and again.content_hash == flow.content_hash
    media = parse_flow(flow_text('say: {text: Look, media: {type: image, id: "77"}}'), "f.yaml")
    assert parse_flow(media.to_yaml()) == media


def test_help_text_is_checked_like_a_say() -> None:
    text = flow_text('say: "Hi"').replace("start: s\n", f'start: s\nhelp: "{LONG_TEXT}"\n')
    with pytest.raises(FlowError) as info:
        parse_flow(text, "f.yaml")
    [p] = info.value.problems
    assert p.code == "whatsapp-limit" and "`help` of flow 'f'" in p.message
