"""CLSI POCT1-A2 device interface: XML messages over TCP (DOMAIN.md §3.1).

Modules: ``xml`` (hardened parse + tolerant view), ``build`` (messages the
gateway sends), ``stream`` (splitting a TCP stream into messages),
``conversation`` (sans-io gateway state machine), ``server`` (asyncio TCP
server), ``simulator`` (a device for tests and demos).
"""
from .build import (LOCK, SET_TIME, START_CONTINUOUS, UNLOCK, AckSpelling, Directive,
                    MessageFactory, Operator, OperatorList, Outgoing)
from .conversation import ConversationConfig, GatewayConversation
from .server import PoctServer, ServerConfig
from .stream import StreamSplitter
from .xml import PoctMessage, PoctXmlError, parse_message

__all__ = [
    "LOCK", "SET_TIME", "START_CONTINUOUS", "UNLOCK", "AckSpelling", "ConversationConfig",
    "Directive", "GatewayConversation", "MessageFactory", "Operator", "OperatorList", "Outgoing",
    "PoctMessage", "PoctServer", "PoctXmlError", "ServerConfig", "StreamSplitter", "parse_message",
]
