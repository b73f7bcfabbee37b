"""Start-up of the instrument side: registry sync, caches, pipeline, listeners."""
from __future__ import annotations

from .. import logging as log_setup
from ..config import Config, Listener
from ..metrics import Metrics
from ..routing import Router
from ..store import MessageWriter
from ..validator import load_rule_tables
from .listeners import start_astm, start_poct
from .pipeline import InstrumentPipeline
from .registry import Registry

log = log_setup.get("labgate.instruments")


class InstrumentService:
    """What the gateway holds for instruments (``gw.instruments``)."""

    def __init__(self, registry: Registry, pipeline: InstrumentPipeline, config: Config):
        self.registry = registry
        self.pipeline = pipeline
        self._settings = config.instrument_settings

    async def start_listener(self, lst: Listener):
        if lst.protocol == "astm":
            return await start_astm(lst, self.pipeline, self._settings)
        if lst.protocol == "poct1a":
            return await start_poct(lst, self.pipeline, self._settings)
        raise ValueError(f"not an instrument protocol: {lst.protocol}")


async def start_instruments(*, config: Config, pool, writer: MessageWriter, metrics: Metrics,
                            validator) -> InstrumentService:
    """Sync the registry from configuration, load the caches, build the pipeline."""
    registry = Registry(config, load_rule_tables(config).qc_interval_minutes)
    async with pool.acquire() as conn:
        await registry.sync(conn)
        await registry.load(conn)

    pipeline = InstrumentPipeline(
        writer=writer, router=Router(config), registry=registry, validator=validator,
        metrics=metrics, pool=pool, gateway_name=config.gateway.name,
        qc_material_pattern=config.instrument_settings.qc_material_pattern,
        lock_directive=config.instrument_settings.lock_directive)
    log.info("instruments.loaded", instruments=len(registry.instruments),
             operators=len(registry.operators))
    return InstrumentService(registry, pipeline, config)
