"""Every exception flowkit raises. All derive from :class:`FlowkitError`.

Each message says what went wrong and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass


class FlowkitError(Exception):
    """Base class of every flowkit error."""


# ---------------------------------------------------------------- flow files


@dataclass(frozen=True)
class Problem:
    """One located problem in a flow file (``file:line:column: message``)."""

    file: str
    line: int
    column: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message} [{self.code}]"

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "code": self.code,
            "message": self.message,
        }


class FlowError(FlowkitError):
    """A flow file (or a flow built in code) is invalid.

    ``problems`` holds every problem found, not only the first.
    """

    def __init__(self, problems: list[Problem] | Problem) -> None:
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        count = len(self.problems)
        head = "\n".join(str(p) for p in self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in flow definition:\n{head}")


class ExpressionError(FlowkitError):
    """An expression or template could not be parsed or evaluated.

    ``position`` is the 0-based offset in ``expression`` where it went wrong.
    """

    def __init__(self, message: str, expression: str, position: int = 0) -> None:
        self.reason = message
        self.expression = expression
        self.position = position
        pointer = " " * position + "^"
        super().__init__(f"{message} in expression {expression!r} at position {position}\n  {expression}\n  {pointer}")


class PatternError(FlowkitError, ValueError):
    """A regular expression in a flow is not one RE2 accepts (matching must stay linear-time)."""


# ---------------------------------------------------------------- engine


class EngineError(FlowkitError):
    """The engine cannot apply an event (a bug in the flow or a corrupt state)."""


class FlowNeeded(EngineError):
    """The engine needs a flow its caller did not resolve (engine/flowset.py). The runtime
    answers it by resolving the flow and running the step again; other callers add the flow
    to the FlowSet they pass."""

    def __init__(self, name: str, version: str | None) -> None:
        self.name, self.version = name, version
        which = f"version {version!r}" if version is not None else "its latest version"
        super().__init__(f"flow {name!r} ({which}) is needed as a sub-flow but was not given to the engine; "
                         f"add it to the FlowSet passed as flows=")


class StateValidationError(EngineError):
    """A state does not satisfy its flow's slot schema."""


class VersionClash(FlowkitError):
    """A flow version label was registered again with different content."""


class UnknownFlowError(FlowkitError):
    """A flow name or version is not registered."""


# ---------------------------------------------------------------- store


class StoreError(FlowkitError):
    """Something went wrong in the Redis state store."""


class StoreUnavailable(StoreError):
    """Redis is unreachable or timed out. Nothing was written; retrying is safe."""


class CorruptStateError(StoreError):
    """A stored state failed its checksum or schema check and was quarantined."""


class SessionNotFound(StoreError):
    """No session with that id exists in the store."""


class ConflictError(StoreError):
    """A commit kept conflicting with concurrent writers beyond the retry budget."""


class BackupError(StoreError):
    """A backup file is unreadable or failed its checksum."""


# ---------------------------------------------------------------- edges


class ChannelError(FlowkitError):
    """The messaging channel (WhatsApp Cloud API) rejected or failed a request."""


class WebhookError(ChannelError):
    """An inbound webhook request is malformed or not authentic."""

    def __init__(self, message: str, status: int = 400, reason: str = "bad_request") -> None:
        self.status = status
        self.reason = reason
        super().__init__(message)


class ServiceError(FlowkitError):
    """A registered service call failed or is unknown."""


class Retryable(ServiceError):
    """Raise from a service for a transient failure that is worth retrying."""


class HistoryError(FlowkitError):
    """A history export is unreadable or does not follow the documented columns."""


class ConfigError(FlowkitError):
    """A configuration value (environment variable or option) is invalid."""


class SessionIdError(FlowkitError, ValueError):
    """A session id that cannot name a session (empty, or not text)."""


class MissingExtra(FlowkitError):
    """A command or function needs an optional package that is not installed."""


class GraphAPIError(ChannelError):
    """The WhatsApp Cloud (Graph) API refused a send, or could not be reached.

    Carries what Graph said (``status``, ``code``, ``subcode``, ``graph_message``,
    ``fbtrace_id`` for Meta support) and whether trying again later may help
    (``retryable``: rate limits, 5xx, unreachable; ``retry_after`` in seconds if known).
    """

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None,
                 subcode: int | None = None, graph_message: str | None = None, fbtrace_id: str | None = None,
                 retry_after: float | None = None, attempts: int = 1, retryable: bool = False) -> None:
        self.status = status
        self.code = code
        self.subcode = subcode
        self.graph_message = graph_message
        self.fbtrace_id = fbtrace_id
        self.retry_after = retry_after
        self.attempts = attempts
        self.retryable = retryable
        super().__init__(message)


# ---------------------------------------------------------------- store (appended by flowkit.store)


class InvalidCommitError(StoreError, ValueError):
    """A state or history record handed to ``Store.commit`` breaks the store contract
    (missing or extra keys, wrong types, not JSON). Nothing was written."""


class VersionUnavailable(StoreError):
    """That version of the session is not in Redis: newer than the current version, or its
    history was trimmed (``history_max_len``); read old versions from a history export."""


class RedisServerError(StoreUnavailable):
    """The embedded ``redis-server`` (or a local test cluster) could not be started or stopped."""


class CheckError(FlowkitError):
    """The history checker's input is unusable (an unreadable sent log, an export that is not one)."""


class StoryError(FlowkitError):
    """A conversation stories file is invalid; ``problems`` holds every located problem."""

    def __init__(self, problems: list[Problem] | Problem) -> None:
        self.problems: list[Problem] = [problems] if isinstance(problems, Problem) else list(problems)
        head = "\n".join(str(p) for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the stories file:\n{head}")


class QueryError(FlowkitError):
    """A session query (``flowkit session find``) does not parse or reads an unknown name."""


class StoreOutOfMemory(StoreUnavailable):
    """Redis refused a write because it reached ``maxmemory`` (an OOM reply; with the
    ``noeviction`` policy flowkit needs, Redis never drops keys to make room). Nothing was
    written: answer 503 and retry later, once memory is freed or ``maxmemory`` is raised."""


# ---------------------------------------------------------------- hand-off and business starts


class HandoffError(FlowkitError):
    """An agent's request (reply, release, start) that cannot be done as asked."""


class NotHeldError(HandoffError):
    """An agent replied to or released a session that is not in hand-off."""


class TemplateRequired(HandoffError):
    """A business-initiated start outside the user's 24-hour window has no template: WhatsApp
    only delivers an approved template there."""


class AgentWebhookError(HandoffError, ConfigError):
    """The agent webhook is misconfigured (a URL without a signing secret, a bad URL): a
    configuration error, so ``flowkit serve`` stops with it (exit 2)."""


class AlreadyLive(HandoffError):
    """A business-initiated start for a user in a live session: it would cut that session off."""


class AgentRequestError(HandoffError):
    """A request body the agent API cannot use (HTTP 400)."""


class FlowNotOnNumber(HandoffError):
    """A business-initiated start of a flow the session's WhatsApp number does not run (the
    numbers file lists each number's flows; HTTP 400)."""


# ---------------------------------------------------------------- several WhatsApp numbers


class NumbersError(ConfigError):
    """The numbers file (``--numbers`` / ``FLOWKIT_NUMBERS``) is invalid or names flows that
    are not loaded. ``problems`` holds every problem found, each with its file and line."""

    def __init__(self, problems: list[Problem] | Problem) -> None:
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        count = len(self.problems)
        head = "\n".join(str(p) for p in self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in the numbers file:\n{head}")
