"""ASTM and POCT1-A listeners wired to the instrument pipeline.

As for MLLP listeners, a listener's ``allow`` list decides which peer
addresses may connect, and every accepted peer acts as the listener's
``system``; the pipeline then only accepts serial numbers registered to that
system.
"""
from __future__ import annotations

from adapters.astm.e1381 import ReceiverConfig, SenderConfig
from adapters.astm.server import AstmServer
from adapters.poct1a.server import PoctServer, ServerConfig
from adapters.poct1a.conversation import ConversationConfig

from .. import logging as log_setup
from ..config import Listener
from ..peer_access import allow_list
from ..instruments.settings import InstrumentSettings
from .pipeline import InstrumentPipeline

log = log_setup.get("labgate.instruments.listeners")


async def start_astm(lst: Listener, pipeline: InstrumentPipeline,
                     settings: InstrumentSettings) -> AstmServer:
    async def on_message(message: bytes, peer):
        return await pipeline.astm_message(message, lst.system, f"{peer.host}:{peer.port}")

    server = AstmServer(
        on_message, name=lst.name, max_connections=lst.max_connections, logger=log,
        authorize=allow_list(lst),
        receiver_config=ReceiverConfig(frame_timeout=settings.astm_frame_timeout_s,
                                       max_message_bytes=lst.max_message_bytes),
        sender_config=SenderConfig(role="computer", ack_timeout=settings.astm_ack_timeout_s))
    await server.start(lst.host, lst.port)
    return server


class PoctListener:
    """A started PoctServer with the ``port``/``stop`` shape the gateway expects."""

    def __init__(self, server: PoctServer, port: int):
        self.server = server
        self.port = port

    async def stop(self) -> None:
        await self.server.stop()

    def stats(self) -> dict:
        return self.server.stats()


async def start_poct(lst: Listener, pipeline: InstrumentPipeline,
                     settings: InstrumentSettings) -> PoctListener:
    async def on_observation(message, peer: str):
        return await pipeline.poct_observation(message, lst.system, peer)

    async def on_hello(message, peer: str):
        return await pipeline.poct_hello(message, lst.system, peer)

    config = ServerConfig(host=lst.host, port=lst.port, idle_timeout=settings.poct_idle_timeout_s,
                          ack_timeout=settings.poct_ack_timeout_s,
                          conversation=ConversationConfig(max_message_bytes=lst.max_message_bytes))
    server = PoctServer(on_observation, on_hello=on_hello, config=config,
                        authorize=allow_list(lst))
    _, port = await server.start()
    return PoctListener(server, port)
