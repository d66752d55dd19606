"""What a simulation runs: the users' personas, how simulated services answer, the server
to post to over HTTP, and :class:`SimConfig` (checked when built: rates in [0, 1], ...)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flowkit.errors import ConfigError
from flowkit.sim.variants import variant_rates

SIM_EPOCH_MS = 1_790_812_800_000  # 2026-10-01T00:00:00Z: a fixed start so runs are reproducible


@dataclass(frozen=True)
class Persona:
    """How one kind of user behaves. Rates are per question (ask step) the user sees."""

    name: str = "typical"
    weight: float = 1.0
    invalid_rate: float = 0.1
    abandon_rate: float = 0.03
    think_time: float = 20.0  # mean seconds between a question and the answer (exponential, + 0.5 s)
    back_rate: float = 0.01
    cancel_rate: float = 0.005
    help_rate: float = 0.01
    patience: int = 8  # asked one question more than this many times in a session, the user gives up (abandons)
    # How this persona behaves differently in an experiment's variant: {variant: {rate: value}},
    # e.g. {"long": {"abandon_rate": 0.4}} (sim/variants.py); applied once the session records it.
    variants: Mapping[str, Mapping[str, float]] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ServiceBehaviour:
    """How a simulated service answers: an error, a slow answer (after ``slow_latency``),
    no answer at all (the call step's timeout fires), else a value after ``latency``."""

    error_rate: float = 0.05
    slow_rate: float = 0.05
    timeout_rate: float = 0.02
    latency: float = 0.3  # seconds
    slow_latency: float = 6.0  # seconds; above the step's timeout the answer arrives too late (stale)


@dataclass(frozen=True)
class HttpTarget:
    """A running ``flowkit serve``: deliveries go to ``url + "/webhook"``, signed with ``app_secret``."""

    url: str
    app_secret: str
    timeout: float = 10.0  # seconds per request
    poll: float = 0.05  # seconds between looks at a session that waits for a service


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. Rates are probabilities in [0, 1]."""

    users: int = 100
    concurrency: int = 4
    seed: int = 0
    flows: Sequence[str] | None = None  # which flows users start (default: every flow with a trigger)
    personas: Sequence[Persona] = (Persona(),)
    services: Mapping[str, ServiceBehaviour] = field(default_factory=dict)
    default_service: ServiceBehaviour = ServiceBehaviour()
    duplicate_rate: float = 0.0  # share of deliveries WhatsApp sends twice
    out_of_order_rate: float = 0.0  # share of answers overtaken by a quick second message
    crash_rate: float = 0.0  # share of deliveries after whose commit the runtime "dies"
    redis_restart_every: int = 0  # restart Redis (``restart_redis``) after every N handled events; 0: never
    arrival_seconds: float = 600.0  # users start spread over this many seconds
    realtime: bool = False
    speed: float = 1.0  # realtime only: the simulator's own delays are divided by this
    start_ms: int | None = None  # virtual start (default SIM_EPOCH_MS; realtime: now)
    http: HttpTarget | None = None
    id_prefix: str | None = None  # session ids are <prefix><7 digits>; default 999 + seed (digits: a WhatsApp wa_id)

    def __post_init__(self) -> None:
        rates = {"duplicate_rate": self.duplicate_rate, "out_of_order_rate": self.out_of_order_rate,
                 "crash_rate": self.crash_rate}
        for p in self.personas:
            rates.update({f"{p.name}.{k}": getattr(p, k) for k in ("invalid_rate", "abandon_rate", "back_rate",
                                                                    "cancel_rate", "help_rate")})
            rates.update(variant_rates(p))
        for name, b in {**self.services, "default_service": self.default_service}.items():
            rates.update({f"{name}.{k}": getattr(b, k) for k in ("error_rate", "slow_rate", "timeout_rate")})
        bad = [f"{k}={v}" for k, v in rates.items() if not 0.0 <= v <= 1.0]
        if bad:
            raise ConfigError(f"rates must be between 0 and 1: {', '.join(bad)}")
        if self.users < 0 or self.concurrency < 1:
            raise ConfigError(f"users must be >= 0 and concurrency >= 1 (got {self.users}, {self.concurrency})")
        if not self.personas or sum(p.weight for p in self.personas) <= 0:
            raise ConfigError("give at least one persona with a positive weight")
        if any(p.patience < 1 for p in self.personas):
            raise ConfigError("a persona's patience must be at least 1 (times one question is asked before giving up)")
        if self.speed <= 0 or self.arrival_seconds < 0:
            raise ConfigError("speed must be > 0 and arrival_seconds >= 0")
        if self.http is not None and self.crash_rate:
            # The simulator cannot stop a server between its commit and its effects; kill the
            # process instead (tests/runtime/test_crash.py does that to `flowkit serve`).
            raise ConfigError("crash_rate needs the in-process runtime; over HTTP, kill the server instead")

    @property
    def live(self) -> bool:
        """On the wall clock (realtime, or over HTTP)."""
        return self.realtime or self.http is not None
