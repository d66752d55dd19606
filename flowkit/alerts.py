"""Alert rules on the deployment-wide metrics: evaluated by ``flowkit alerts`` and the worker.

Rules live in YAML (``examples/alerts.yaml`` is a complete set)::

    webhook_url: https://ops.example.com/hooks/flowkit   # optional; or $FLOWKIT_ALERT_WEBHOOK
    rules:
      - name: service_errors
        signal: service_error_rate      # a signal from SIGNALS
        threshold: "> 0.2"              # the signal's value over `window`
        window: 5m
        min_events: 10                  # ignore rates computed from fewer calls
        severity: critical
        summary: "{service} fails {value:.0%} of calls"
      - name: stuck_sessions_growing
        signal: stuck_sessions
        stuck_after: 30m
        change: "> 20"                  # now minus `window` ago
        window: 15m

A signal is either a counter of :data:`flowkit.metrics.COUNTERS` (summed over the window,
one alert per label value, e.g. per service), a ratio of counters, or a gauge read from
the store's indexes. Nothing is evaluated as code: the comparison is parsed from a fixed
grammar. Firing and resolving are kept in Redis (``fk:alerts:active`` and the
``fk:alerts:log`` stream, with start and end times), logged, and POSTed to the webhook.
Gauge samples for ``change`` rules are kept in ``fk:alerts:samples:<signal>`` for a day.
"""

from __future__ import annotations

import json
import operator
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from flowkit.errors import ConfigError
from flowkit.flow.model import parse_duration
from flowkit.log import error_fields, get_logger, url_origin
from flowkit.metrics.redis import COUNTERS, MINUTE_MS, minutes, split_field
from flowkit.store import keys as K

log = get_logger("flowkit.alerts")

ACTIVE_KEY = "fk:alerts:active"
LOG_KEY = "fk:alerts:log"
SAMPLES_PREFIX = "fk:alerts:samples:"
SAMPLE_KEEP_MS = 86_400_000

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}
_COMPARISON = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")

# ratio signals: (numerator counter, denominator counter, labels kept)
RATIOS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "service_error_rate": ("service_errors", "service_calls", ("service",)),
    "conflict_rate": ("conflicts", "events", ()),
    "duplicate_rate": ("duplicates", "events", ()),
    "send_failure_rate": ("send_failures", "messages_out", ()),
}
GAUGES = ("stuck_sessions", "outbox_backlog", "active_sessions", "quarantined", "redis_unreachable")
SIGNALS = (*COUNTERS, *RATIOS, *GAUGES)


@dataclass(frozen=True)
class Rule:
    name: str
    signal: str
    op: str
    value: float
    kind: str = "threshold"  # or "change"
    window_ms: int = 300_000
    severity: str = "warning"
    summary: str = ""
    min_events: float = 0
    stuck_after_ms: int = 1_800_000
    labels: Mapping[str, str] = field(default_factory=dict)  # only these label values (e.g. one flow)

    def breached(self, v: float) -> bool:
        return _OPS[self.op](v, self.value)


@dataclass(frozen=True)
class Alert:
    """One firing alert instance (a rule, and label values for labelled signals)."""

    name: str
    severity: str
    labels: Mapping[str, str]
    since_ms: int
    value: float
    message: str

    @property
    def key(self) -> str:
        return instance_key(self.name, self.labels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"labels": dict(self.labels)}


def instance_key(name: str, labels: Mapping[str, str]) -> str:
    return name + "".join(f"|{k}={v}" for k, v in sorted(labels.items()))


# ---------------------------------------------------------------- loading rules


def load_rules(source: str | Path | Mapping[str, Any]) -> tuple[list[Rule], str | None]:
    """Rules (and the webhook URL) from a YAML file, YAML text or a mapping. Raises ConfigError naming the rule."""
    if isinstance(source, Mapping):
        doc, where = dict(source), "<rules>"
    else:
        path = Path(source) if not str(source).lstrip().startswith(("rules", "webhook_url", "{")) else None
        text = path.read_text(encoding="utf-8") if path is not None else str(source)
        where = str(path) if path is not None else "<rules>"
        try:
            doc = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise ConfigError(f"{where}: expected a mapping with a `rules:` list")
    rules, seen = [], set()
    for i, raw in enumerate(doc["rules"]):
        rules.append(_rule(raw, f"{where}: rules[{i}]"))
        if rules[-1].name in seen:
            raise ConfigError(f"{where}: rules[{i}]: the name {rules[-1].name!r} is used twice; names must be unique")
        seen.add(rules[-1].name)
    webhook = doc.get("webhook_url") or os.environ.get("FLOWKIT_ALERT_WEBHOOK") or None
    return rules, webhook


_RULE_KEYS = {"name", "signal", "threshold", "change", "window", "severity", "summary", "min_events", "stuck_after",
              "labels"}


def _rule_comparison(raw: dict[str, Any], where: str) -> tuple[str, re.Match[str]]:
    """``threshold`` or ``change`` (exactly one) and its comparison, like ``> 5``."""
    if ("threshold" in raw) == ("change" in raw):
        raise ConfigError(f"{where}: give exactly one of `threshold` or `change`, e.g. threshold: \"> 5\"")
    kind = "threshold" if "threshold" in raw else "change"
    m = _COMPARISON.match(str(raw[kind]))
    if not m:
        raise ConfigError(f"{where}: {kind} must look like \"> 5\" or \"<= 0.1\", got {raw[kind]!r}")
    return kind, m


def _rule_durations(raw: dict[str, Any], where: str) -> tuple[float, float]:
    """The rule's ``window`` (at most a day) and ``stuck_after``, in seconds."""
    try:
        window = parse_duration(raw.get("window", "5m"))
        stuck = parse_duration(raw.get("stuck_after", "30m"))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not 0 < window <= 86_400:
        # each window minute is one pipelined read per shard: a day is ~11k reads, more is a report, not an alert
        raise ConfigError(f"{where}: window must be more than 0 and at most 24h, got {raw.get('window')!r}")
    return window, stuck


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a rule must be a mapping")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_RULE_KEYS))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: every rule needs a `name`")
    where = f"{where} ({name})"
    signal = raw.get("signal")
    if signal not in SIGNALS:
        raise ConfigError(f"{where}: unknown signal {signal!r}; choose one of {', '.join(SIGNALS)}")
    kind, m = _rule_comparison(raw, where)
    window, stuck = _rule_durations(raw, where)
    severity = raw.get("severity", "warning")
    if severity not in ("info", "warning", "critical"):
        raise ConfigError(f"{where}: severity must be info, warning or critical, got {severity!r}")
    labels = raw.get("labels") or {}
    if not isinstance(labels, dict):
        raise ConfigError(f"{where}: labels must be a mapping like {{flow: order_pizza}}")
    return Rule(name=name, signal=signal, op=m.group(1), value=float(m.group(2)), kind=kind,
                window_ms=int(window * 1000), severity=severity, summary=str(raw.get("summary") or ""),
                min_events=float(raw.get("min_events", 0)), stuck_after_ms=int(stuck * 1000),
                labels={str(k): str(v) for k, v in labels.items()})


# ---------------------------------------------------------------- signals


def _window(client: Any, since_ms: int, until_ms: int) -> dict[str, float]:
    acc: dict[str, float] = {}
    # Whole minutes only: buckets starting in [since, until), both rounded up to a minute.
    # The minute still filling up is left out, so a value never drops as a minute fills
    # (alerts lag by under a minute) and back-to-back windows never share a minute.
    first = -(-since_ms // MINUTE_MS) * MINUTE_MS
    last = -(-until_ms // MINUTE_MS) * MINUTE_MS - MINUTE_MS
    if last < first:
        return acc
    for counts in minutes(client, first, last).values():
        for f, v in counts.items():
            acc[f] = acc.get(f, 0.0) + v
    return acc


def _by(counts: Mapping[str, float], name: str, keep: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    names = COUNTERS[name]
    out: dict[tuple[str, ...], float] = {}
    for f, v in counts.items():
        n, labels = split_field(f)
        if n != name:
            continue
        key = tuple(labels[names.index(k)] for k in keep)
        out[key] = out.get(key, 0.0) + v
    return out


def counter_values(client: Any, rule: Rule, since_ms: int, until_ms: int) -> dict[tuple[tuple[str, str], ...], float]:
    """Signal values per label set over [since, until] for counter and ratio signals."""
    counts = _window(client, since_ms, until_ms)
    if rule.signal in COUNTERS:
        names = COUNTERS[rule.signal]
        values = _by(counts, rule.signal, names)
        if not names:
            values = {(): values.get((), 0.0)}
        return {tuple(zip(names, k, strict=True)): v for k, v in values.items()}
    num, den, keep = RATIOS[rule.signal]
    nums, dens = _by(counts, num, keep), _by(counts, den, keep)
    out = {}
    for k in set(nums) | set(dens) | ({()} if not keep else set()):
        d = dens.get(k, 0.0)
        if d > 0 and d >= rule.min_events:
            out[tuple(zip(keep, k, strict=True))] = nums.get(k, 0.0) / d
    return out


def gauge_value(client: Any, rule: Rule, now_ms: int) -> float:
    s = rule.signal
    if s == "stuck_sessions":
        return float(client.zcount(K.IDX_ACTIVE, "-inf", now_ms - rule.stuck_after_ms))
    if s == "outbox_backlog":  # older than a minute: a send that is merely in flight is not a backlog
        return float(client.zcount(K.IDX_OUTBOX, "-inf", now_ms - 60_000))
    if s == "active_sessions":
        return float(client.zcard(K.IDX_ACTIVE))
    if s == "quarantined":
        return float(client.get(K.QUARANTINE_COUNT) or 0)
    raise ValueError(s)


def _sample_key(rule: Rule) -> str:
    extra = f":{rule.stuck_after_ms}" if rule.signal == "stuck_sessions" else ""
    return f"{SAMPLES_PREFIX}{rule.signal}{extra}"


def _record_sample(client: Any, rule: Rule, now_ms: int, value: float) -> None:
    key = _sample_key(rule)
    client.zadd(key, {f"{now_ms}:{value}": now_ms})
    client.zremrangebyscore(key, "-inf", now_ms - SAMPLE_KEEP_MS)


def _sample_at(client: Any, rule: Rule, at_ms: int) -> float | None:
    got = client.zrevrangebyscore(_sample_key(rule), at_ms, "-inf", start=0, num=1)
    if not got:
        return None
    member = got[0].decode() if isinstance(got[0], bytes) else got[0]
    return float(member.split(":", 1)[1])


# ---------------------------------------------------------------- evaluation


def evaluate(client: Any, rules: Iterable[Rule], now_ms: int) -> list[tuple[Rule, dict[str, str], float]]:
    """Which (rule, labels, value) are breached at ``now_ms``. Records gauge samples for change rules."""
    breached: list[tuple[Rule, dict[str, str], float]] = []
    for rule in rules:
        if rule.signal == "redis_unreachable":
            continue  # answered by AlertManager.run: if we got here, Redis answered
        if rule.signal in GAUGES:
            v = _gauge_signal(client, rule, now_ms)
            if v is not None and rule.breached(v):
                breached.append((rule, {}, v))
            continue
        breached += _counter_breaches(client, rule, now_ms)
    return breached


def _gauge_signal(client: Any, rule: Rule, now_ms: int) -> float | None:
    """A gauge rule's value now (for a change rule: since a window ago, None before there is
    a sample that old); records this sample for later change rules."""
    v = gauge_value(client, rule, now_ms)
    if rule.kind != "change":
        return v
    before = _sample_at(client, rule, now_ms - rule.window_ms)
    _record_sample(client, rule, now_ms, v)
    if before is None:
        return None  # not enough history yet
    return v - before


def _counter_breaches(client: Any, rule: Rule, now_ms: int) -> list[tuple[Rule, dict[str, str], float]]:
    """The label sets of a counter rule (matching its labels) whose window breaches it."""
    now_vals = counter_values(client, rule, now_ms - rule.window_ms, now_ms)
    if rule.kind == "change":
        earlier = counter_values(client, rule, now_ms - 2 * rule.window_ms, now_ms - rule.window_ms)
        keys = set(now_vals) | set(earlier)
        now_vals = {k: now_vals.get(k, 0.0) - earlier.get(k, 0.0) for k in keys}
    out: list[tuple[Rule, dict[str, str], float]] = []
    for labels, v in sorted(now_vals.items()):
        lab = dict(labels)
        if any(lab.get(k) != want for k, want in rule.labels.items()):
            continue
        if rule.breached(v):
            out.append((rule, lab, v))
    return out


def _message(rule: Rule, labels: Mapping[str, str], value: float) -> str:
    if rule.summary:
        try:
            return rule.summary.format(value=value, **labels)
        except (KeyError, ValueError, IndexError):
            pass  # a summary naming a missing label still gets a useful message below
    where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    what = "change of " if rule.kind == "change" else ""
    return f"{rule.signal}{f' ({where})' if where else ''}: {what}{value:g} {rule.op} {rule.value:g}"


@dataclass
class RunResult:
    fired: list[Alert]
    resolved: list[Alert]
    active: list[Alert]

    def to_dict(self) -> dict[str, Any]:
        return {k: [a.to_dict() for a in getattr(self, k)] for k in ("fired", "resolved", "active")}


class AlertManager:
    """Evaluates rules, keeps firing alerts in Redis, logs and POSTs changes."""

    def __init__(self, client: Any, rules: list[Rule], *, webhook_url: str | None = None,
                 http: httpx.Client | None = None, clock: Callable[[], int] | None = None) -> None:
        self.client = client
        self.rules = rules
        self.webhook_url = webhook_url
        self.http = http
        self.clock = clock or (lambda: time.time_ns() // 1_000_000)
        self._unreachable_since: int | None = None

    def run(self, now_ms: int | None = None) -> RunResult:
        now = self.clock() if now_ms is None else now_ms
        try:
            self.client.ping()
        except Exception as exc:  # noqa: BLE001 - any client failure means "unreachable" here
            return self._redis_down(now, exc)
        fired: list[Alert] = []
        if self._unreachable_since is not None:
            resolved_down = self._down_alert(self._unreachable_since, 1.0)
            self._unreachable_since = None
            self._notify("resolved", resolved_down, now)
        current = {instance_key(r.name, lab): (r, lab, v) for r, lab, v in evaluate(self.client, self.rules, now)}
        stored = {(k.decode() if isinstance(k, bytes) else k): json.loads(v)
                  for k, v in self.client.hgetall(ACTIVE_KEY).items()}
        for key, (rule, labels, value) in current.items():
            if key in stored:
                continue
            alert = Alert(rule.name, rule.severity, labels, now, value, _message(rule, labels, value))
            self.client.hset(ACTIVE_KEY, key, json.dumps(alert.to_dict()))
            self._notify("fired", alert, now)
            fired.append(alert)
        resolved = []
        for key, data in stored.items():
            if key not in current:
                alert = Alert(**data)
                self.client.hdel(ACTIVE_KEY, key)
                self._notify("resolved", alert, now)
                resolved.append(alert)
        return RunResult(fired, resolved, active(self.client))

    def _down_alert(self, since: int, value: float) -> Alert:
        return Alert("redis_unreachable", "critical", {}, since, value, "Redis does not answer")

    def _redis_down(self, now: int, exc: Exception) -> RunResult:
        if not any(r.signal == "redis_unreachable" for r in self.rules):
            log.error("alerts not evaluated: Redis is unreachable", extra=error_fields(exc))
            return RunResult([], [], [])
        alert = self._down_alert(self._unreachable_since or now, 1.0)
        if self._unreachable_since is None:
            self._unreachable_since = now
            self._notify("fired", alert, now, store=False)
            return RunResult([alert], [], [alert])
        return RunResult([], [], [alert])

    def _notify(self, event: str, alert: Alert, now: int, *, store: bool = True) -> None:
        entry = alert.to_dict() | {"event": event, "at_ms": now}
        if event == "resolved":
            entry["ended_ms"] = now
        level = log.warning if event == "fired" else log.info
        level(f"alert {event}: {alert.message}", extra={"alert": alert.name, "severity": alert.severity,
                                                         "labels": dict(alert.labels), "value": alert.value})
        if store:
            self.client.xadd(LOG_KEY, {"json": json.dumps(entry)}, maxlen=10_000, approximate=True)
        if self.webhook_url:
            try:
                http = self.http or httpx.Client(timeout=5)
                r = http.post(self.webhook_url, json=entry)
                r.raise_for_status()
            except httpx.HTTPError as exc:  # an unreachable pager must not stop evaluation
                # the URL's path is often its credential (Slack, Teams), and httpx quotes the URL
                # in its messages: log only where it points, the status and the error type
                status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
                log.error("alert webhook failed", extra={"url": url_origin(self.webhook_url), "http_status": status,
                                                         "error_type": type(exc).__name__})


def active(client: Any) -> list[Alert]:
    """Alerts firing now, most recent first."""
    items = [Alert(**json.loads(v)) for v in client.hgetall(ACTIVE_KEY).values()]
    return sorted(items, key=lambda a: (-a.since_ms, a.name))


def history(client: Any, limit: int = 100) -> list[dict[str, Any]]:
    """Fired and resolved events, newest first (``event``, ``at_ms``, ``ended_ms`` on resolve)."""
    return [json.loads(fields[b"json"] if b"json" in fields else fields["json"])
            for _, fields in client.xrevrange(LOG_KEY, count=limit)]


# ---------------------------------------------------------------- Prometheus rules


def prometheus_rules(rules: Iterable[Rule]) -> str:
    """The same rules as a Prometheus alerting-rules file (for users who run Prometheus).

    Counters map to ``increase(flowkit_total_<name>_total[window])`` of the series the
    ``/metrics`` collector exports; gauges to their ``flowkit_*`` gauge.
    """
    out = []
    for r in rules:
        expr = _promql(r)
        if expr is None:
            continue
        out.append({"alert": r.name, "expr": f"{expr} {r.op} {r.value:g}",
                    "labels": {"severity": r.severity},
                    "annotations": {"summary": _go_template(r.summary) or f"{r.signal} {r.op} {r.value:g}"}})
    return yaml.safe_dump({"groups": [{"name": "flowkit", "rules": out}]}, sort_keys=False)


def _go_template(summary: str) -> str:
    """``{service} at {value:.0%}`` -> ``{{ $labels.service }} at {{ $value }}`` (Prometheus templating)."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        return "{{ $value }}" if name == "value" else "{{ $labels." + name + " }}"

    return re.sub(r"\{(\w+)(?::[^}]*)?\}", sub, summary)


def _promql(r: Rule) -> str | None:
    w = f"{max(1, r.window_ms // 1000)}s"
    sel = "{" + ",".join(f'{k}="{v}"' for k, v in sorted(r.labels.items())) + "}" if r.labels else ""

    def inc(name: str, by: tuple[str, ...]) -> str:
        group = f" by ({', '.join(by)})" if by else ""
        return f"sum{group}(increase(flowkit_total_{name}_total{sel}[{w}]))"

    if r.signal in COUNTERS:
        base = inc(r.signal, COUNTERS[r.signal])
        return f"({base} - {base} offset {w})" if r.kind == "change" else base
    if r.signal in RATIOS:
        num, den, keep = RATIOS[r.signal]
        return f"({inc(num, keep)} / {inc(den, keep)})"
    gauges = {"active_sessions": "flowkit_active_sessions", "quarantined": "flowkit_quarantined_states",
              "outbox_backlog": "flowkit_outbox_backlog", "redis_unreachable": None, "stuck_sessions": None}
    g = gauges.get(r.signal)
    if g is None:
        return None  # no Prometheus series: evaluated by flowkit only
    return f"delta({g}[{w}])" if r.kind == "change" else g


__all__ = ["Alert", "AlertManager", "Rule", "SIGNALS", "active", "evaluate", "history", "load_rules",
           "prometheus_rules"]
