"""HL7 v2 Minimal Lower Layer Protocol (MLLP) over asyncio streams.

``framing`` cuts bytes into messages without sockets, ``server`` is the
listener the gateway's inbound path uses, ``client`` the sender the delivery
worker uses. See each module for the details of the wire behaviour.
"""
from .client import MllpClient, send_once
from .errors import MllpConnectionError, MllpError, MllpFrameTooLarge, MllpTimeout
from .framing import END_BLOCK, START_BLOCK, MllpFramer, frame
from .peer import Peer, subject_string
from .server import Authorize, Handler, MllpServer, OnOversize

__all__ = [
    "START_BLOCK", "END_BLOCK", "frame", "MllpFramer",
    "Peer", "subject_string", "Handler", "Authorize", "OnOversize",
    "MllpServer", "MllpClient", "send_once",
    "MllpError", "MllpFrameTooLarge", "MllpTimeout", "MllpConnectionError",
]
