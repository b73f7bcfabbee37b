"""Property tests of the E1381 machines: splits, hostile bytes, lossy links."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.astm.actions import (Aborted, CancelTimer, Interrupted, MessageReceived, Send,
                                   SetTimer, TransferComplete)
from adapters.astm.e1381 import Receiver, ReceiverConfig, Sender, SenderConfig
from adapters.astm.frames import ENQ, EOT, encode_records, split_message
from astm_data import EXAMPLES, frames, records

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
CONTROL = b"\x02\x03\x04\x05\x06\x15\x17\r\n"


def all_frames(names) -> list[bytes]:
    """Frames for the examples sent in one transfer (numbers run on)."""
    if len(names) == 1:
        return frames(names[0])                  # the DOMAIN.md bytes themselves
    return encode_records(split_message(b"".join(records(n) for n in names)))


def stream(names) -> bytes:
    return ENQ + b"".join(all_frames(names)) + EOT


def feed_chunks(receiver: Receiver, data: bytes, cuts: list[int]):
    actions, last = [], 0
    for cut in sorted(set(cuts)) + [len(data)]:
        actions += receiver.feed(data[last:cut])
        last = cut
    return actions


@SETTINGS
@given(names=st.lists(st.sampled_from(sorted(EXAMPLES)), min_size=1, max_size=3),
       cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=40))
def test_any_split_of_a_valid_stream_gives_the_same_records_and_answers(names, cuts):
    data = stream(names)
    whole = Receiver().feed(data)
    parts = feed_chunks(Receiver(), data, [c % (len(data) + 1) for c in cuts])
    assert [a for a in parts if not isinstance(a, SetTimer)] == \
           [a for a in whole if not isinstance(a, SetTimer)]
    assert [a.data for a in whole if isinstance(a, MessageReceived)] == [records(n) for n in names]


@SETTINGS
@given(names=st.lists(st.sampled_from(sorted(EXAMPLES)), min_size=1, max_size=2),
       noise=st.lists(st.binary(max_size=8).map(
           lambda b: bytes(c for c in b if c not in CONTROL)), min_size=30, max_size=30))
def test_noise_between_frames_never_changes_the_records(names, noise):
    fs = all_frames(names)
    data = ENQ + b"".join(noise[i % len(noise)] + f for i, f in enumerate(fs)) + EOT
    out = Receiver().feed(data)
    assert [a.data for a in out if isinstance(a, MessageReceived)] == [records(n) for n in names]


@SETTINGS
@given(chunks=st.lists(st.one_of(st.binary(max_size=64),
                                 st.sampled_from([ENQ, EOT, b"\x02", b"\x03", b"\x17"]),
                                 st.sampled_from([f for n in EXAMPLES for f in frames(n)])),
                       max_size=40),
       calls=st.lists(st.sampled_from(["feed", "timeout", "accept", "reject", "interrupt"]),
                      min_size=40, max_size=40),
       confirm=st.booleans(), busy=st.booleans())
def test_receiver_never_raises_on_any_input(chunks, calls, confirm, busy):
    r = Receiver(ReceiverConfig(confirm_messages=confirm, max_message_bytes=300,
                                max_frame_bytes=120))
    r.busy = busy
    for chunk, call in zip(chunks, calls):
        if call == "feed":
            out = r.feed(chunk)
        else:
            out = {"timeout": r.timeout, "accept": r.accept, "reject": r.reject,
                   "interrupt": lambda: r.request_interrupt() or []}[call]()
        assert isinstance(out, list)
    assert r.state in (Receiver.IDLE, Receiver.RECEIVING, Receiver.DISCARDING,
                       Receiver.CONFIRMING)


@SETTINGS
@given(data=st.lists(st.one_of(st.binary(max_size=16), st.sampled_from(
           [b"\x06", b"\x15", b"\x04", b"\x05"])), max_size=60),
       timeouts=st.lists(st.booleans(), min_size=60, max_size=60),
       role=st.sampled_from(["computer", "instrument"]))
def test_sender_never_raises_on_any_input(data, timeouts, role):
    s = Sender(SenderConfig(role=role))
    s.send([records("E5")])
    for chunk, fire in zip(data, timeouts):
        assert isinstance(s.feed(chunk), list)
        if fire:
            assert isinstance(s.timeout(), list)
        if s.idle:
            s.send([records("E6")])


def run_link(messages, faults, max_steps=2000):
    """Sender and receiver joined by a channel that follows ``faults``.

    ``faults`` is a list of booleans per transmitted unit (frame or reply):
    True loses it (the peer's timer then fires) or, for frames, spoils the
    checksum, alternately. Returns (delivered messages, sender outcome).
    """
    sender = Sender(SenderConfig(role="instrument"))
    receiver = Receiver()
    to_receiver, to_sender = [], []
    timers = {"s": False, "r": False}
    outcome = None
    fault_iter = iter(faults)
    delivered = []

    def apply(name, actions, outbox):
        nonlocal outcome
        for a in actions:
            if isinstance(a, Send):
                fault = next(fault_iter, False)
                if not fault:
                    outbox.append(a.data)
                elif len(a.data) > 5 and name == "s":
                    outbox.append(a.data[:-4] + b"ZZ" + a.data[-2:])
            elif isinstance(a, SetTimer):
                timers[name] = True
            elif isinstance(a, CancelTimer):
                timers[name] = False
            elif isinstance(a, MessageReceived):
                delivered.append(a.data)
            elif name == "s" and isinstance(a, (TransferComplete, Aborted, Interrupted)):
                outcome = type(a).__name__

    apply("s", sender.send(messages), to_receiver)
    for _ in range(max_steps):
        if to_receiver:
            apply("r", receiver.feed(to_receiver.pop(0)), to_sender)
        elif to_sender:
            apply("s", sender.feed(to_sender.pop(0)), to_receiver)
        elif outcome is not None:
            apply("r", receiver.timeout() if not receiver.idle else [], to_sender)
            break
        elif timers["s"]:
            timers["s"] = False
            apply("s", sender.timeout(), to_receiver)
        elif timers["r"]:
            timers["r"] = False
            apply("r", receiver.timeout(), to_sender)
        else:
            break
    return delivered, outcome


@SETTINGS
@given(names=st.lists(st.sampled_from(sorted(EXAMPLES)), min_size=1, max_size=3),
       faults=st.lists(st.booleans(), max_size=80))
def test_lossy_link_delivers_each_message_once_intact_or_aborts_cleanly(names, faults):
    msgs = [records(n) for n in names]
    delivered, outcome = run_link(msgs, faults)
    assert outcome in ("TransferComplete", "Aborted")
    assert delivered == msgs[:len(delivered)]           # in order, intact, never twice
    if outcome == "TransferComplete":
        assert delivered == msgs


def test_lossless_link_delivers_everything():
    msgs = [records(n) for n in sorted(EXAMPLES)]
    assert run_link(msgs, []) == (msgs, "TransferComplete")
