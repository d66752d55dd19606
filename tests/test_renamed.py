"""Former names keep working for users' code, with a DeprecationWarning that names the new one."""

import importlib

import pytest


@pytest.mark.parametrize(("module", "new"), [
    ("flowkit", "UserMessage"),
    ("flowkit.engine", "UserMessage"),
    ("flowkit.engine.events", "UserMessage"),
    ("flowkit.flow", "BotMessage"),
    ("flowkit.flow.model", "BotMessage"),
])
def test_message_is_renamed_with_a_warning(module: str, new: str) -> None:
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=f"renamed {new}"):
        old = mod.Message
    assert old is getattr(mod, new)


def test_the_two_directions_are_different_classes() -> None:
    from flowkit.engine import UserMessage
    from flowkit.flow import BotMessage

    assert UserMessage is not BotMessage
    assert UserMessage(text="hi").text == "hi"
    assert BotMessage().menu is None  # `list:` in a flow file; the attribute does not shadow the builtin


def test_unknown_names_still_raise() -> None:
    import flowkit.engine

    with pytest.raises(AttributeError):
        flowkit.engine.NoSuchThing  # noqa: B018
