"""Model providers: pooled SDK clients, fleet-wide concurrency slots, chat and embeddings."""

from workers.providers.calls import ChatRequest, Completion, complete, embed_texts
from workers.providers.clients import close_clients, pooled_client, unpooled_client
from workers.providers.config import ProviderConfig, provider_config
from workers.providers.errors import (
    ProviderBusyError,
    ProviderConfigError,
    ProviderError,
    ProviderRequestError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from workers.providers.limits import SlotUsage, provider_slot, slot_leases, slot_usage

__all__ = [
    "ChatRequest",
    "Completion",
    "ProviderBusyError",
    "ProviderConfig",
    "ProviderConfigError",
    "ProviderError",
    "ProviderRequestError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "SlotUsage",
    "close_clients",
    "complete",
    "embed_texts",
    "pooled_client",
    "provider_config",
    "provider_slot",
    "slot_leases",
    "slot_usage",
    "unpooled_client",
]
