"""Connecting to Temporal, for the gateway and the worker."""

from __future__ import annotations

from temporalio.client import Client

from agentstream.runtime.settings import TemporalSettings
from agentstream.temporal_codec import data_converter


async def connect_temporal(settings: TemporalSettings) -> Client:
    """A client of the configured frontend and namespace, with the runs' payload converter."""
    return await Client.connect(
        settings.address, namespace=settings.namespace, data_converter=data_converter
    )
