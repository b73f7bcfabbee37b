"""The asyncio server over real sockets on 127.0.0.1, driven by the device simulator."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from adapters.poct1a.build import LOCK, Directive, Operator, OperatorList
from adapters.poct1a.conversation import (ACK_TIMEOUT, ACK_WRONG_CONTROL_ID, ConversationConfig,
                                          IDLE_TIMEOUT, MESSAGE_TIMEOUT)
from adapters.poct1a.server import GATEWAY_ERROR, PoctServer, ServerConfig
from adapters.poct1a.simulator import BILLION_LAUGHS, run_simulation
from adapters.poct1a.stream import StreamSplitter
from adapters.poct1a.xml import (XML_DTD_FORBIDDEN, XML_MALFORMED, XML_NOT_XML, XML_TOO_DEEP,
                                 XML_TOO_LARGE, parse_message)
from fhir.resources.R4B.bundle import Bundle
from mappings.issue import rejects
from mappings.poct1a import poct_to_bundle


class Gateway:
    """A PoctServer with recording callbacks."""

    def __init__(self, *, accept=True, raise_in_callback=False, pushes=None, **config):
        self.observations = []
        self.hellos = []
        self.accept, self.raise_in_callback = accept, raise_in_callback
        self.pushes = pushes if pushes is not None else [
            OperatorList((Operator("OP017", "Kari Nordmann", "1"),)),
            Directive(LOCK, (("DTV.target_cd", "CRP"),))]
        conv = config.pop("conversation", ConversationConfig(max_message_bytes=200_000))
        self.server = PoctServer(self.on_observation, on_hello=self.on_hello,
                                 config=ServerConfig(conversation=conv, **config))

    async def on_observation(self, msg, peer):
        if self.raise_in_callback:
            raise RuntimeError("database down")
        self.observations.append(msg)
        return (True, None) if self.accept else (False, "QC-LOCKOUT: QC failed for this analyte")

    async def on_hello(self, msg, peer):
        self.hellos.append(msg)
        return self.pushes

    async def __aenter__(self):
        self.host, self.port = await self.server.start()
        return self

    async def __aexit__(self, *exc):
        await self.server.stop()


async def settle(server: PoctServer) -> None:
    for _ in range(200):
        if server.stats()["connections_open"] == 0:
            return
        await asyncio.sleep(0.01)


async def raw_exchange(port: int, payload: bytes, *, read_timeout: float = 5.0) -> list:
    """Send bytes, read until the gateway closes; return the parsed replies."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
    except ConnectionError:
        pass
    data = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), read_timeout):
            data += chunk
    except ConnectionError:
        pass
    writer.close()
    return [parse_message(f) for f in StreamSplitter().feed(data)]


HEL = (b'<HEL.R01><HDR><HDR.control_id V="1"/><HDR.version_id V="POCT1"/></HDR>'
       b'<DEV><DEV.serial_id V="S1"/></DEV></HEL.R01>')


# the happy path ----------------------------------------------------------------------

@pytest.mark.parametrize("scenario,code", [("hba1c", "HbA1c"), ("crp", "CRP")])
async def test_full_conversation(scenario, code):
    async with Gateway() as gw:
        t = await run_simulation(gw.host, gw.port, scenario=scenario, linger=0.5)
        await settle(gw.server)
        stats = gw.server.stats()
    assert t["completed"] and t["ended_by"] == "device"
    assert t["sent"][:3] == ["HEL.R01", "DST.R01", "OBS.R01"] and t["sent"][-1] == "END.R01"
    assert {a["type_cd"] for a in t["acks"].values()} == {"AA"} and len(t["acks"]) == 5
    assert t["operators_received"] == 1 and t["directives_received"] == ["LOCK"]
    assert [m.msg_type for m in gw.observations] == ["OBS.R01", "OBS.R02"]
    assert gw.observations[0].value("OBS.observation_id") == code
    assert gw.hellos[0].value("DEV.serial_id") == "000987"
    assert stats["observations_accepted"] == 2 and stats["pushes_accepted"] == 3
    assert stats["ended_by_device"] == 1 and stats["errors"] == {}


async def test_rejection_reaches_the_device_as_ae():
    async with Gateway(accept=False, pushes=[]) as gw:
        t = await run_simulation(gw.host, gw.port)
    obs_acks = [a for a in t["acks"].values() if a["type_cd"] == "AE"]
    assert len(obs_acks) == 2 and obs_acks[0]["note"] == "QC-LOCKOUT: QC failed for this analyte"
    assert t["completed"]


async def test_failing_callback_is_answered_with_ae_not_a_dropped_connection():
    async with Gateway(raise_in_callback=True, pushes=[]) as gw:
        t = await run_simulation(gw.host, gw.port)
    assert t["completed"]
    assert all(GATEWAY_ERROR in n for n in t["gateway_errors"]) and len(t["gateway_errors"]) == 2


@pytest.mark.parametrize("pushes", [["not a push", Directive(LOCK)], None])
async def test_bad_hello_callback_results_are_survived(pushes):
    class Odd(Gateway):
        async def on_hello(self, msg, peer):
            if pushes is None:
                raise RuntimeError("registry down")
            return pushes

        async def on_observation(self, msg, peer):
            return None  # not a tuple: answered as a gateway error, not a crash

    async with Odd() as gw:
        t = await run_simulation(gw.host, gw.port, linger=0.3)
    assert t["completed"]
    assert t["directives_received"] == ([] if pushes is None else ["LOCK"])
    assert len(t["gateway_errors"]) == 2 and all(GATEWAY_ERROR in e for e in t["gateway_errors"])


async def test_mapping_end_to_end(code_map):
    bundles = []

    async def on_observation(msg, peer):
        bundle, issues, qc = poct_to_bundle(msg, code_map=code_map, device_id="000987")
        Bundle.model_validate(bundle)
        bundles.append((msg.msg_type, bundle, qc))
        return not rejects(issues), None

    server = PoctServer(on_observation)
    host, port = await server.start()
    try:
        t = await run_simulation(host, port, scenario="hba1c")
    finally:
        await server.stop()
    assert t["completed"] and {a["type_cd"] for a in t["acks"].values()} == {"AA"}
    (_, patient_bundle, no_qc), (_, qc_bundle, qc) = bundles
    obs = [e["resource"] for e in patient_bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert obs[0]["code"]["coding"][0]["code"] == "NPU27300" and no_qc == []
    assert "entry" not in qc_bundle and qc[0]["control_lot"] == "C2-80412"


# every simulator fault -----------------------------------------------------------------

async def test_fault_malformed_xml():
    async with Gateway() as gw:
        t = await run_simulation(gw.host, gw.port, faults={"malformed_xml"})
        await settle(gw.server)
        assert gw.server.stats()["errors"] == {XML_MALFORMED: 1}
    assert not t["completed"] and t["ended_by"] in ("gateway", "transport")
    assert XML_MALFORMED in t["end_reason"] or any(XML_MALFORMED in e for e in t["gateway_errors"])
    assert gw.observations == []


async def test_fault_entity_bomb():
    async with Gateway() as gw:
        t = await run_simulation(gw.host, gw.port, faults={"entity_bomb"})
        await settle(gw.server)
        assert gw.server.stats()["errors"] == {XML_DTD_FORBIDDEN: 1}
    assert t["ended_by"] in ("gateway", "transport") and not t["completed"]
    assert gw.observations == []


async def test_fault_oversized():
    async with Gateway() as gw:
        t = await run_simulation(gw.host, gw.port, faults={"oversized"}, oversized_bytes=1_000_000)
        await settle(gw.server)
        assert gw.server.stats()["errors"] == {XML_TOO_LARGE: 1}
    # The device is still writing its megabyte when the gateway ends: the END
    # reaches it only because the gateway closes with a lingering close.
    assert t["ended_by"] == "gateway" and not t["completed"]
    assert XML_TOO_LARGE in t["end_reason"]


async def test_fault_wrong_ack_control_id():
    async with Gateway() as gw:
        t = await run_simulation(gw.host, gw.port, faults={"wrong_ack_control_id"})
        await settle(gw.server)
        assert gw.server.stats()["errors"] == {ACK_WRONG_CONTROL_ID: 1}
    assert t["ended_by"] == "gateway" and "ESC.R01" in t["received"]
    assert ACK_WRONG_CONTROL_ID in t["end_reason"]


async def test_fault_slow_peer_within_deadline_succeeds():
    async with Gateway() as gw:
        t = await run_simulation(gw.host, gw.port, faults={"slow_peer"}, chunk=32, chunk_delay=0)
    assert t["completed"] and len(gw.observations) == 2


async def test_fault_slow_peer_past_the_message_deadline_is_cut_off():
    async with Gateway(message_timeout=0.05) as gw:
        t = await run_simulation(gw.host, gw.port, faults={"slow_peer"}, chunk=8, chunk_delay=0.02)
        await settle(gw.server)
        assert gw.server.stats()["errors"] == {MESSAGE_TIMEOUT: 1}
    assert t["ended_by"] in ("gateway", "transport") and not t["completed"]
    assert MESSAGE_TIMEOUT in t["end_reason"] or t["ended_by"] == "transport"


async def test_fault_dropped_connection():
    async with Gateway() as gw:
        t = await run_simulation(gw.host, gw.port, faults={"drop_connection"})
        await settle(gw.server)
        stats = gw.server.stats()
    assert t["end_reason"] == "dropped connection" and not t["completed"]
    assert stats["ended_by_transport"] == 1 and gw.observations == []


async def test_unknown_fault_is_refused():
    with pytest.raises(ValueError):
        await run_simulation("127.0.0.1", 1, faults={"cosmic_ray"})


# hostile peers on a raw socket ---------------------------------------------------------

@pytest.mark.parametrize("payload,code", [
    (BILLION_LAUGHS, XML_DTD_FORBIDDEN),
    (b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>', XML_DTD_FORBIDDEN),
    (b"<a>" * 5000, XML_TOO_DEEP),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", XML_NOT_XML),
    (b"\x00\x01\x02\xff" * 100, XML_NOT_XML),
    (HEL + b"<OBS.R01><HDR></OBS.R01>", XML_MALFORMED),
])
async def test_hostile_payload_gets_a_reason_and_a_closed_connection(payload, code):
    async with Gateway() as gw:
        replies = await raw_exchange(gw.port, payload)
        await settle(gw.server)
        assert gw.server.stats()["errors"] == {code: 1}
    assert replies[-1].msg_type == "END.R01" and code in replies[-1].value("TRM.note_txt")


async def test_twenty_megabytes_is_cut_off_at_the_bound():
    async with Gateway() as gw:
        await raw_exchange(gw.port, b"<OBS.R01>" + b"x" * 20_000_000 + b"</OBS.R01>")
        await settle(gw.server)
        stats = gw.server.stats()
    assert stats["errors"] == {XML_TOO_LARGE: 1} and stats["bytes_in"] < 2_000_000


async def test_idle_device_is_ended():
    async with Gateway(idle_timeout=0.05, pushes=[]) as gw:
        replies = await raw_exchange(gw.port, HEL)
    assert [m.msg_type for m in replies] == ["ACK.R01", "END.R01"]
    assert IDLE_TIMEOUT in replies[1].value("TRM.note_txt")


async def test_device_that_never_acks_a_push_is_ended():
    dst = b'<DST.R01><HDR><HDR.control_id V="2"/></HDR></DST.R01>'
    async with Gateway(ack_timeout=0.05) as gw:
        replies = await raw_exchange(gw.port, HEL + dst)
    assert [m.msg_type for m in replies] == ["ACK.R01", "ACK.R01", "OPL.R01", "END.R01"]
    assert ACK_TIMEOUT in replies[-1].value("TRM.note_txt")


async def test_stop_ends_open_conversations():
    gw = Gateway(pushes=[])
    host, port = await gw.server.start()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(HEL)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    assert b"ACK.R01" in data
    await gw.server.stop()
    rest = await asyncio.wait_for(reader.read(), 5)
    msgs = [parse_message(f) for f in StreamSplitter().feed(data + rest)]
    assert msgs[-1].msg_type == "END.R01" and msgs[-1].value("TRM.reason_cd") == "NRM"
    writer.close()
    assert gw.server.stats()["connections_open"] == 0 and gw.server.address is None


async def test_many_devices_at_once():
    async with Gateway() as gw:
        results = await asyncio.gather(*(run_simulation(gw.host, gw.port, device_serial=f"D{i}",
                                                        linger=0.05) for i in range(10)))
    assert all(t["completed"] for t in results) and len(gw.observations) == 20


async def test_heartbeats_do_not_extend_the_wait_for_an_ack():
    # A device that keeps sending DST but never ACKs the pushed operator list
    # must still be ended after ack_timeout (the wait used to restart on every read).
    async with Gateway(ack_timeout=0.3, idle_timeout=10) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(HEL + b'<DST.R01><HDR><HDR.control_id V="2"/></HDR></DST.R01>')
        await writer.drain()
        received = bytearray()

        async def read_all():
            # one reader until EOF: a read cancelled by a timeout can lose data
            while chunk := await reader.read(65536):
                received.extend(chunk)

        reading = asyncio.create_task(read_all())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        n = 3
        while loop.time() < deadline and b"END.R01" not in received and not reading.done():
            try:                                 # a heartbeat every 50 ms, for up to 3 s
                writer.write(b'<DST.R01><HDR><HDR.control_id V="%d"/></HDR></DST.R01>' % n)
                await writer.drain()
            except ConnectionError:
                break
            n += 1
            await asyncio.sleep(0.05)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reading, 1.0)
        reading.cancel()
        writer.close()
        data = bytes(received)
    msgs = [parse_message(f) for f in StreamSplitter().feed(data)]
    assert msgs[-1].msg_type == "END.R01"
    assert ACK_TIMEOUT in msgs[-1].value("TRM.note_txt")
