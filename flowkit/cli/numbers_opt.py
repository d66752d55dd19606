"""``--numbers FILE``: the option of the commands that receive or send on several WhatsApp
numbers (``serve``, ``worker``, ``recover``, ``start``), read and checked the same way."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from flowkit.channels.whatsapp.numbers import Numbers, numbers_from_env
from flowkit.errors import NumbersError

NumbersOption = Annotated[Path | None, typer.Option(
    "--numbers", envvar="FLOWKIT_NUMBERS", show_default=False,
    help="YAML file mapping each WhatsApp phone number id to its flows (and optional rate, name); "
         "without it every number of WHATSAPP_PHONE_NUMBER_ID runs every flow (default: $FLOWKIT_NUMBERS).")]


def numbers_option(path: Path | None, flow_names: Iterable[str]) -> Numbers:
    """The numbers file (else ``WHATSAPP_PHONE_NUMBER_ID``), its flows checked against the
    loaded ones; every problem printed as ``file:line:column`` and exit 2."""
    try:
        numbers = numbers_from_env(path)
        numbers.check_flows(flow_names)
    except NumbersError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(2) from None
    listed = Numbers.from_ids(os.environ.get("WHATSAPP_PHONE_NUMBER_ID", "").split(",")).ids
    if numbers.source is not None and not listed <= numbers.ids:
        # the file decides; an id only the variable names would otherwise be dropped silently
        typer.echo(f"warning: WHATSAPP_PHONE_NUMBER_ID lists {', '.join(sorted(listed - numbers.ids))}, which "
                   f"{numbers.source} does not; messages to it are skipped. Add it to the file or drop it "
                   "from the variable", err=True)
    return numbers


def sending_number(numbers: Numbers) -> str | None:
    """The number a sender is configured with: the primary one (None: WHATSAPP_PHONE_NUMBER_ID's first)."""
    return numbers.primary.id if numbers.primary is not None else None


__all__ = ["NumbersOption", "numbers_option", "sending_number"]
