"""A simulated POCT1-A2 device, for tests, demos and load runs.

``run_simulation`` connects to a gateway and plays one conversation::

    HEL ► ACK, DST ► ACK, OBS.R01 (patient) ► ACK, OBS.R02 (liquid QC) ► ACK,
    EOT ► ACK, then waits until the gateway has been quiet for ``linger``
    seconds, sends END and closes.

Whatever the gateway pushes meanwhile (OPL, EOT, DTV) is acknowledged with
ACK AA. ``faults`` makes the device misbehave:

- ``malformed_xml``: the patient OBS is not well-formed XML.
- ``entity_bomb``: a billion-laughs document instead of the patient OBS.
- ``oversized``: the patient OBS is padded past ``oversized_bytes``.
- ``wrong_ack_control_id``: the device ACKs gateway pushes with a wrong id.
- ``slow_peer``: every message trickles out in ``chunk`` bytes with ``chunk_delay`` pauses.
- ``drop_connection``: the device sends half the patient OBS and drops the connection.

The result is a transcript summary (see ``_Transcript``).
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Callable
from xml.etree.ElementTree import Element, SubElement

from .build import build_message, field_element, now_iso
from .stream import StreamSplitter
from .xml import PoctMessage, PoctXmlError, parse_message

FAULTS = frozenset({"malformed_xml", "entity_bomb", "oversized", "wrong_ack_control_id",
                    "slow_peer", "drop_connection"})


@dataclass(frozen=True)
class Scenario:
    """What the device measures: one patient result and one QC result."""
    code: str
    value: str
    unit: str
    qc_value: str
    control_name: str
    control_lot: str
    control_level: str
    reagent_name: str
    reagent_lot: str


SCENARIOS = {
    "hba1c": Scenario("HbA1c", "48", "mmol/mol", "61", "HbA1c Control C2", "C2-80412", "II",
                      "HbA1c test", "HB-2241"),
    "crp": Scenario("CRP", "27", "mg/L", "41", "CRP Control II", "CII-55821", "II",
                    "CRP test", "10012345"),
}

BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1
                                                             else b"&lol;") * 10)
                             for i in range(1, 10))
                  + b']><OBS.R01>&lol9;</OBS.R01>')


@dataclass
class _Transcript:
    sent: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    acks: dict[str, dict] = field(default_factory=dict)   # our control id -> {type_cd, note}
    operators_received: int = 0
    directives_received: list[str] = field(default_factory=list)
    gateway_errors: list[str] = field(default_factory=list)
    ended_by: str = ""
    end_reason: str = ""
    completed: bool = False


class _GatewayEnded(Exception):
    pass


class _Device:
    """One connection's worth of device behaviour."""

    def __init__(self, reader, writer, *, faults: frozenset[str], timeout: float,
                 chunk: int, chunk_delay: float, serial: str):
        self.reader, self.writer = reader, writer
        self.faults, self.timeout = faults, timeout
        self.chunk, self.chunk_delay = chunk, chunk_delay
        self.serial = serial
        self.ids = itertools.count(10001)
        self.splitter = StreamSplitter()
        self.inbox: deque[PoctMessage] = deque()
        self.t = _Transcript()

    def build(self, msg_type: str, fill: Callable[[Element], None] | None) -> tuple[str, bytes]:
        cid = str(next(self.ids))
        return cid, build_message(msg_type, cid, now_iso(), fill)

    async def send(self, data: bytes, msg_type: str) -> None:
        self.t.sent.append(msg_type)
        if "slow_peer" in self.faults:
            for i in range(0, len(data), self.chunk):
                self.writer.write(data[i:i + self.chunk])
                await self.writer.drain()
                await asyncio.sleep(self.chunk_delay)
        else:
            self.writer.write(data)
            await self.writer.drain()

    async def request(self, msg_type: str, fill=None, *, data: bytes | None = None,
                      cid: str | None = None) -> PoctMessage:
        """Send one message and handle gateway traffic until its ACK arrives."""
        if data is None:
            cid, data = self.build(msg_type, fill)
        await self.send(data, msg_type)
        while True:
            msg = await self.receive(self.timeout)
            if msg.msg_type == "ACK.R01" and (msg.value("ACK.ack_control_id") or "") == cid:
                self.record_ack(cid, msg)
                return msg
            await self.handle_gateway(msg)

    async def receive(self, timeout: float) -> PoctMessage:
        while not self.inbox:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionResetError("gateway closed the connection")
            for raw in self.splitter.feed(data):
                self.inbox.append(parse_message(raw))
        msg = self.inbox.popleft()
        self.t.received.append(msg.msg_type)
        return msg

    def record_ack(self, cid: str, msg: PoctMessage) -> None:
        type_cd = msg.value("ACK.type_cd") or ""
        note = msg.value("ACK.note_txt")
        self.t.acks[cid] = {"type_cd": type_cd, "note": note}
        if type_cd != "AA" and note:
            self.t.gateway_errors.append(note)

    async def handle_gateway(self, msg: PoctMessage) -> None:
        """A message the gateway started: ACK it, or stop on END."""
        kind = msg.msg_type
        if kind == "END.R01":
            self.t.end_reason = msg.value("TRM.note_txt") or msg.value("TRM.reason_cd") or ""
            raise _GatewayEnded()
        if kind == "ESC.R01":
            self.t.gateway_errors.append(msg.value("ESC.note_txt") or "")
            return
        if kind == "ACK.R01":
            if msg.value("ACK.type_cd") != "AA":
                self.t.gateway_errors.append(msg.value("ACK.note_txt") or "")
            return
        if kind == "OPL.R01":
            self.t.operators_received += len(msg.findall("OPR"))
        elif kind == "DTV.R01":
            self.t.directives_received.append(msg.value("DTV.command_cd") or "")
        acked = msg.control_id or ""
        if "wrong_ack_control_id" in self.faults:
            acked = f"{acked}999"
        _, data = self.build("ACK.R01", lambda root: _ack_fill(root, acked))
        await self.send(data, "ACK.R01")

    async def linger(self, quiet: float) -> None:
        """Serve gateway pushes until it has been quiet for ``quiet`` seconds."""
        while True:
            try:
                msg = await self.receive(quiet)
            except TimeoutError:
                return
            await self.handle_gateway(msg)


def _ack_fill(root: Element, acked: str) -> None:
    ack = SubElement(root, "ACK")
    field_element(ack, "ACK.type_cd", "AA")
    field_element(ack, "ACK.ack_control_id", acked)


def _hello_fill(serial: str) -> Callable[[Element], None]:
    def fill(root: Element) -> None:
        dev = SubElement(root, "DEV")
        field_element(dev, "DEV.device_id", f"SIM-{serial}")
        field_element(dev, "DEV.serial_id", serial)
        field_element(dev, "DEV.manufacturer_name", "LABGATE-SIM")
        field_element(dev, "DEV.sw_version", "1.0")
        field_element(dev, "DEV.device_name", "Simulated POC analyser")
        field_element(SubElement(dev, "DCP"), "DCP.application_timeout", "60")
        dsc = SubElement(dev, "DSC")
        field_element(dsc, "DSC.connection_profile_cd", "CS")
        field_element(dsc, "DSC.topics_supported_cd", "OPL")
        for directive in ("START_CONTINUOUS", "SET_TIME", "LOCK", "UNLOCK"):
            field_element(dsc, "DSC.directives_supported_cd", directive)
        field_element(dsc, "DSC.max_message_sz", "32000")
    return fill


def _status_fill(qty: int) -> Callable[[Element], None]:
    def fill(root: Element) -> None:
        dst = SubElement(root, "DST")
        field_element(dst, "DST.status_dttm", now_iso())
        field_element(dst, "DST.new_observations_qty", str(qty))
        field_element(dst, "DST.condition_cd", "R")
    return fill


def _patient_fill(s: Scenario, patient_id: str, operator_id: str,
                  padding: int = 0) -> Callable[[Element], None]:
    def fill(root: Element) -> None:
        svc = SubElement(root, "SVC")
        field_element(svc, "SVC.role_cd", "OBS")
        field_element(svc, "SVC.observation_dttm", now_iso())
        field_element(svc, "SVC.reason_cd", "NEW")
        pt = SubElement(svc, "PT")
        field_element(pt, "PT.patient_id", patient_id)
        obs = SubElement(pt, "OBS")
        field_element(obs, "OBS.observation_id", s.code, SN="LABGATE-SIM")
        field_element(obs, "OBS.value", s.value, s.unit)
        field_element(obs, "OBS.method_cd", "M")
        if padding:
            field_element(obs, "NTE.text", "x" * padding)
        field_element(SubElement(svc, "OPR"), "OPR.operator_id", operator_id)
        rgt = SubElement(svc, "RGT")
        field_element(rgt, "RGT.name", s.reagent_name)
        field_element(rgt, "RGT.lot_number", s.reagent_lot)
        field_element(rgt, "RGT.expiration_date", "2026-12-31")
    return fill


def _qc_fill(s: Scenario, operator_id: str) -> Callable[[Element], None]:
    def fill(root: Element) -> None:
        svc = SubElement(root, "SVC")
        field_element(svc, "SVC.role_cd", "LQC")
        field_element(svc, "SVC.observation_dttm", now_iso())
        field_element(svc, "SVC.reason_cd", "NEW")
        ctc = SubElement(svc, "CTC")
        field_element(ctc, "CTC.name", s.control_name)
        field_element(ctc, "CTC.lot_number", s.control_lot)
        field_element(ctc, "CTC.expiration_date", "2026-06-30")
        field_element(ctc, "CTC.level_cd", s.control_level)
        obs = SubElement(svc, "OBS")
        field_element(obs, "OBS.observation_id", s.code, SN="LABGATE-SIM")
        field_element(obs, "OBS.value", s.qc_value, s.unit)
        field_element(SubElement(svc, "OPR"), "OPR.operator_id", operator_id)
    return fill


async def _conversation(dev: _Device, s: Scenario, *, patient_id: str, operator_id: str,
                        oversized_bytes: int, linger: float, qc_first: bool = False) -> None:
    await dev.request("HEL.R01", _hello_fill(dev.serial))
    await dev.request("DST.R01", _status_fill(2))
    padding = oversized_bytes if "oversized" in dev.faults else 0
    if qc_first:                             # the morning's control run, then patients
        await dev.request("OBS.R02", _qc_fill(s, operator_id))
    cid, obs = dev.build("OBS.R01", _patient_fill(s, patient_id, operator_id, padding))
    if "drop_connection" in dev.faults:
        await dev.send(obs[: len(obs) // 2], "OBS.R01")
        dev.writer.transport.abort()
        dev.t.ended_by, dev.t.end_reason = "device", "dropped connection"
        return
    if "malformed_xml" in dev.faults:
        obs = obs.replace(b"</SVC>", b"</SVX>")
    if "entity_bomb" in dev.faults:
        obs = BILLION_LAUGHS
    await dev.request("OBS.R01", data=obs, cid=cid)
    if not qc_first:
        await dev.request("OBS.R02", _qc_fill(s, operator_id))
    await dev.request("EOT.R01", lambda root: field_element(SubElement(root, "EOT"),
                                                            "EOT.topic_cd", "OBS"))
    await dev.linger(linger)
    _, end = dev.build("END.R01", lambda root: field_element(SubElement(root, "TRM"),
                                                             "TRM.reason_cd", "NRM"))
    await dev.send(end, "END.R01")
    dev.t.ended_by, dev.t.completed = "device", True


async def run_simulation(host: str, port: int, *, scenario: str = "hba1c",
                         faults: frozenset[str] | set[str] = frozenset(),
                         patient_id: str = "13116900216", operator_id: str = "OP017",
                         device_serial: str = "000987", timeout: float = 5.0,
                         linger: float = 0.1, chunk: int = 64, chunk_delay: float = 0.001,
                         oversized_bytes: int = 2_000_000, qc_first: bool = False) -> dict:
    """Play one device conversation against ``host:port``; return the transcript.

    The transcript has ``sent``/``received`` message types in order, ``acks``
    (device control id -> {type_cd, note}), ``operators_received``,
    ``directives_received``, ``gateway_errors`` (texts of ACK AE / ESC),
    ``ended_by`` ("device", "gateway", "transport" or "timeout"),
    ``end_reason`` and ``completed`` (the whole script ran).
    ``qc_first`` sends the QC run before the patient result (a control run
    at the start of the day).
    """
    unknown = set(faults) - FAULTS
    if unknown:
        raise ValueError(f"unknown faults: {sorted(unknown)}")
    s = SCENARIOS[scenario]
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    dev = _Device(reader, writer, faults=frozenset(faults), timeout=timeout, chunk=chunk,
                  chunk_delay=chunk_delay, serial=device_serial)
    try:
        await _conversation(dev, s, patient_id=patient_id, operator_id=operator_id,
                            oversized_bytes=oversized_bytes, linger=linger, qc_first=qc_first)
    except _GatewayEnded:
        dev.t.ended_by = "gateway"
    except TimeoutError:
        dev.t.ended_by, dev.t.end_reason = "timeout", "no answer from the gateway"
    except (ConnectionError, OSError) as exc:
        dev.t.ended_by, dev.t.end_reason = "transport", type(exc).__name__
    except PoctXmlError as exc:
        dev.t.ended_by, dev.t.end_reason = "device", f"gateway sent bad XML: {exc.code}"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    return {**asdict(dev.t), "scenario": scenario, "faults": sorted(faults)}
