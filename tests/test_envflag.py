"""Yes/no settings: one spelling everywhere, a typo is an error that names the setting."""

from __future__ import annotations

import pytest

from flowkit.envflag import env_flag, parse_flag
from flowkit.errors import ConfigError


@pytest.mark.parametrize("text", ["1", "true", "YES", " on "])
def test_yes(text: str) -> None:
    assert parse_flag(text, "X") is True


@pytest.mark.parametrize("text", ["0", "False", "no", "OFF"])
def test_no(text: str) -> None:
    assert parse_flag(text, "X") is False


def test_unset_or_empty_is_the_default_and_a_typo_is_an_error() -> None:
    assert env_flag("FLAG", True, {}) is True
    assert env_flag("FLAG", False, {"FLAG": "  "}) is False
    with pytest.raises(ConfigError, match=r"FLOWKIT_READ_RECEIPTS must be 1 or 0 .* got 'ture'"):
        env_flag("FLOWKIT_READ_RECEIPTS", False, {"FLOWKIT_READ_RECEIPTS": "ture"})
