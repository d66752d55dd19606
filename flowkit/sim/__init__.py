"""The simulator: seeded simulated users driving the real runtime on a real Redis."""

from flowkit.sim.answers import invalid_answer, service_value, valid_answer
from flowkit.sim.simulator import (
    SIM_EPOCH_MS,
    HttpTarget,
    Persona,
    ServiceBehaviour,
    SimConfig,
    SimResult,
    Simulator,
    simulate,
)

__all__ = ["HttpTarget", "Persona", "SIM_EPOCH_MS", "ServiceBehaviour", "SimConfig", "SimResult", "Simulator",
           "invalid_answer", "service_value", "simulate", "valid_answer"]
