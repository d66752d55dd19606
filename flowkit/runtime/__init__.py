"""The Flow Handler: routing, load -> engine -> commit (CAS retry), effects after commit."""

from flowkit.errors import Retryable, VersionClash
from flowkit.retry import RetryPolicy
from flowkit.runtime.bulk import bulk
from flowkit.runtime.channel import (
    AsyncChannel,
    AsyncRecordingChannel,
    AsyncWhatsAppChannel,
    Channel,
    RecordingChannel,
    WhatsAppChannel,
)
from flowkit.runtime.handler import AsyncRuntime, Outcome, RecoveryReport, Runtime
from flowkit.runtime.migrate import MigrationPlan, MigrationResult, apply_migration, plan_migration
from flowkit.runtime.registry import FlowRegistry
from flowkit.runtime.services import ServiceRegistry

__all__ = [
    "AsyncChannel", "AsyncRecordingChannel", "AsyncRuntime", "AsyncWhatsAppChannel", "Channel", "FlowRegistry",
    "MigrationPlan", "MigrationResult", "Outcome", "RecordingChannel", "RecoveryReport", "Retryable", "RetryPolicy", "Runtime", "ServiceRegistry", "VersionClash",
    "WhatsAppChannel", "apply_migration", "bulk", "plan_migration",
]
