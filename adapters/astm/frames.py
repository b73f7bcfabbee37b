"""ASTM E1381 / CLSI LIS01-A2 control characters, checksums and frames.

A frame is ``<STX> FN text <ETX|ETB> C1 C2 <CR><LF>`` (DOMAIN.md §3.2):

- FN is the frame number, ASCII ``1``..``7`` then ``0``, cyclic; the first
  frame after each ENQ is ``1``;
- ETB ends an intermediate frame (the record goes on in the next frame),
  ETX the last frame of a record;
- C1 C2 is the sum of every byte from FN through ETX/ETB inclusive, mod 256,
  as two uppercase hexadecimal characters.

Pure functions only; the state machines in :mod:`adapters.astm.e1381` use
them.
"""
from __future__ import annotations

ENQ = b"\x05"
ACK = b"\x06"
NAK = b"\x15"
STX = b"\x02"
ETX = b"\x03"
ETB = b"\x17"
EOT = b"\x04"
CR = b"\r"
LF = b"\n"
CRLF = CR + LF

#: E1381 says a frame holds at most 240 characters of text [K].
MAX_FRAME_TEXT = 240


def checksum(body: bytes) -> bytes:
    """The two uppercase hex checksum characters for ``FN text ETX|ETB``."""
    return b"%02X" % (sum(body) & 0xFF)


def next_frame_number(fn: int) -> int:
    """The frame number after ``fn``: 1..7 then 0, cyclic."""
    return (fn + 1) % 8


def encode_frame(fn: int, text: bytes, last: bool) -> bytes:
    """One complete frame with frame number ``fn`` (0..7) and ``text``.

    ``last`` chooses ETX (end of record) over ETB (record continues).
    """
    body = b"%d" % (fn % 8) + text + (ETX if last else ETB)
    return STX + body + checksum(body) + CRLF


def split_record(record: bytes, max_text: int = MAX_FRAME_TEXT) -> list[tuple[bytes, bool]]:
    """Cut one record (CR-terminated) into frame texts.

    Returns ``(text, last)`` pairs: every piece but the last goes in an ETB
    frame, the last in an ETX frame. ``max_text`` counts the text only
    (without the frame number).
    """
    if max_text < 1:
        raise ValueError("max_text must be at least 1")
    pieces = [record[i:i + max_text] for i in range(0, len(record), max_text)] or [b""]
    return [(p, i == len(pieces) - 1) for i, p in enumerate(pieces)]


def encode_records(records: list[bytes], first_fn: int = 1,
                   max_text: int = MAX_FRAME_TEXT) -> list[bytes]:
    """Frames for ``records`` (each CR-terminated), numbered from ``first_fn``.

    Each record starts a new frame, as E1381 asks; long records are split.
    """
    frames = []
    fn = first_fn
    for record in records:
        for text, last in split_record(record, max_text):
            frames.append(encode_frame(fn, text, last))
            fn = next_frame_number(fn)
    return frames


def split_message(message: bytes) -> list[bytes]:
    """The records of an E1394 message, each ending in CR.

    Accepts CR, LF or CR LF as record terminators and drops empty lines.
    """
    text = message.replace(CRLF, CR).replace(LF, CR)
    return [r + CR for r in text.split(CR) if r]
