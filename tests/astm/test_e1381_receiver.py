"""Byte-level tests of the E1381 receiver, one per state transition."""
from __future__ import annotations

from adapters.astm.actions import (Aborted, CancelTimer, MessageReceived, Send, SetTimer,
                                   TransferEnded)
from adapters.astm.e1381 import Receiver, ReceiverConfig
from adapters.astm.frames import (ACK, ENQ, EOT, ETX, NAK, STX, checksum, encode_frame,
                                  encode_records, split_message)
from astm_data import EXAMPLES, frames, records

ACKED = [Send(ACK), SetTimer(30.0)]
NAKED = [Send(NAK), SetTimer(30.0)]


def sends(actions) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Send))


def received(actions) -> list[bytes]:
    return [a.data for a in actions if isinstance(a, MessageReceived)]


def started(config: ReceiverConfig | None = None) -> Receiver:
    r = Receiver(config)
    assert r.feed(ENQ) == ACKED
    return r


def bad_checksum(frame: bytes) -> bytes:
    return frame[:-4] + (b"00" if frame[-4:-2] != b"00" else b"11") + frame[-2:]


# -- establishment ---------------------------------------------------------

def test_idle_receiver_answers_enq_with_ack_and_starts_the_frame_timer():
    r = Receiver()
    assert r.feed(ENQ) == ACKED
    assert r.state == Receiver.RECEIVING


def test_busy_receiver_answers_enq_with_nak_and_stays_idle():
    r = Receiver()
    r.busy = True
    assert r.feed(ENQ) == [Send(NAK)]
    assert r.idle


def test_idle_receiver_ignores_everything_but_enq():
    r = Receiver()
    assert r.feed(b"noise" + ACK + NAK + EOT + frames("E5")[0]) == []
    assert r.idle
    assert r.stats["garbage_bytes"] > 0


def test_repeated_enq_before_any_frame_is_acknowledged_again():
    r = started()
    assert r.feed(ENQ) == ACKED
    assert r.feed(frames("E5")[0]) == ACKED


# -- transfer ----------------------------------------------------------------

def test_e5_frames_are_acknowledged_and_reassembled_exactly():
    r = started()
    out = []
    for frame in frames("E5"):
        actions = r.feed(frame)
        assert sends(actions) == ACK
        out += actions
    assert received(out) == [records("E5")]
    assert r.feed(EOT) == [CancelTimer(), TransferEnded()]
    assert r.idle


def test_every_domain_example_decodes_exactly():
    for name in EXAMPLES:
        r = started()
        out = r.feed(b"".join(frames(name)) + EOT)
        assert received(out) == [records(name)], name
        assert sends(out) == ACK * len(frames(name))


def test_message_is_delivered_when_its_l_record_arrives_not_at_eot():
    r = started()
    fs = frames("E6")
    assert received(r.feed(b"".join(fs[:-1]))) == []
    assert received(r.feed(fs[-1])) == [records("E6")]


def test_bad_checksum_is_naked_and_the_good_retransmission_accepted():
    r = started()
    f1 = frames("E5")[0]
    assert r.feed(bad_checksum(f1)) == NAKED
    assert r.feed(f1) == ACKED
    assert r.stats["naks"] == 1


def test_lowercase_checksum_is_accepted_unless_strict():
    f1 = frames("E6")[0]                          # checksum AB
    lower = f1[:-4] + f1[-4:-2].lower() + f1[-2:]
    assert started().feed(lower) == ACKED
    strict = ReceiverConfig(strict_checksum_case=True)
    assert started(strict).feed(lower) == [Send(NAK), SetTimer(30.0)]


def test_non_hex_checksum_is_naked():
    f1 = frames("E5")[0]
    assert started().feed(f1[:-4] + b"G!" + f1[-2:]) == NAKED


def test_wrong_frame_number_is_naked():
    r = started()
    assert r.feed(encode_frame(2, b"H|\\^&\r", True)) == NAKED


def test_frame_zero_at_start_is_not_taken_for_a_duplicate():
    assert started().feed(encode_frame(0, b"H|\\^&\r", True)) == NAKED


def test_frame_number_that_is_not_a_digit_0_to_7_is_naked():
    r = started()
    for fn in (b"8", b"9", b"A", b" "):
        body = fn + b"H\r" + ETX
        assert r.feed(STX + body + checksum(body) + b"\r\n") == NAKED


def test_empty_frame_is_naked():
    assert started().feed(STX + ETX + checksum(ETX) + b"\r\n") == NAKED


def test_duplicate_frame_after_a_lost_ack_is_acknowledged_and_suppressed():
    r = started()
    fs = frames("E7")
    out = r.feed(fs[0]) + r.feed(fs[1]) + r.feed(fs[1]) + r.feed(fs[2]) + r.feed(fs[3])
    assert sends(out) == ACK * 5
    assert received(out) == [records("E7")]
    assert r.stats["duplicates"] == 1


def test_duplicate_of_the_last_frame_is_not_delivered_twice():
    r = started()
    fs = frames("E8")
    out = r.feed(b"".join(fs)) + r.feed(fs[-1])
    assert received(out) == [records("E8")]
    assert sends(out)[-1:] == ACK


def test_etb_frames_are_reassembled_into_records(corpus):
    data = (corpus / "astm" / "lis1-frames" / "python-astm-chunked-frames-ETB.txt").read_bytes()
    r = started(ReceiverConfig(deliver_unterminated=True))     # the example has no L record
    out = r.feed(data)
    assert sends(out) == ACK * 4
    out += r.feed(EOT)
    assert received(out) == [b"foo|1\rbar|24\rbaz|1^2^3|boo\r"]


def test_long_record_split_by_our_encoder_is_reassembled():
    rec = b"R|1|^^^CRP|" + b"9" * 1000 + b"\r"
    r = started()
    out = r.feed(b"".join(encode_records([b"H|\\^&\r", rec, b"L|1|N\r"])))
    assert received(out) == [b"H|\\^&\r" + rec + b"L|1|N\r"]


def test_frame_numbers_wrap_from_7_to_0():
    recs = [b"H|\\^&\r"] + [b"R|%d\r" % i for i in range(1, 10)] + [b"L|1|N\r"]
    r = started()
    out = r.feed(b"".join(encode_records(recs)))
    assert received(out) == [b"".join(recs)]


def test_several_messages_in_one_transfer_are_delivered_separately():
    r = started()
    data = b"".join(encode_records(split_message(records("E5") + records("E6"))))
    assert received(r.feed(data)) == [records("E5"), records("E6")]


def test_records_without_terminator_are_discarded_at_eot():
    r = started()
    r.feed(b"".join(encode_records([b"H|\\^&\r", b"P|1\r"])))
    out = r.feed(EOT)
    assert out == [CancelTimer(), Aborted("EOT before the L record; 2 record(s) discarded")]
    assert r.idle


def test_records_without_terminator_can_be_delivered_incomplete_at_eot():
    r = started(ReceiverConfig(deliver_unterminated=True))
    r.feed(b"".join(encode_records([b"H|\\^&\r", b"P|1\r"])))
    out = r.feed(EOT)
    assert out == [CancelTimer(), MessageReceived(b"H|\\^&\rP|1\r", complete=False),
                   TransferEnded()]


def test_eot_inside_an_unfinished_record_aborts():
    r = started()
    r.feed(encode_frame(1, b"H|\\^&|||", last=False))
    out = r.feed(EOT)
    assert out == [CancelTimer(), Aborted("EOT inside an unfinished record")]
    assert r.idle


# -- tolerance -----------------------------------------------------------------

def test_garbage_between_frames_is_ignored():
    r = started()
    noise = b"\x00\xffjunk\r\n\x06\x15"
    data = b"".join(noise + f for f in frames("E5"))
    out = r.feed(data)
    assert received(out) == [records("E5")]
    assert sends(out) == ACK * 6
    assert r.stats["garbage_bytes"] >= len(noise) * 6


def test_missing_cr_lf_trailer_is_tolerated():
    r = started()
    data = b"".join(f[:-2] for f in frames("E8"))
    assert received(r.feed(data)) == [records("E8")]


def test_record_ended_by_etx_without_cr_gets_one():
    r = started()
    data = b"".join(encode_records([b"H|\\^&", b"L|1|N"]))
    assert received(r.feed(data)) == [b"H|\\^&\rL|1|N\r"]


def test_stx_inside_a_frame_restarts_it():
    r = started()
    f1 = frames("E5")[0]
    assert r.feed(f1[:20] + f1) == ACKED


def test_enq_inside_a_frame_drops_it_and_restarts_the_transfer():
    r = started()
    r.feed(frames("E5")[0])
    out = r.feed(frames("E5")[1][:10] + ENQ)
    assert out == [CancelTimer(), Aborted("new ENQ before EOT"), Send(ACK), SetTimer(30.0)]
    assert r.feed(frames("E5")[0]) == ACKED


def test_eot_in_the_checksum_position_ends_the_transfer():
    r = started()
    f1 = frames("E5")[0]
    end = f1.index(ETX)
    out = r.feed(f1[:end + 2] + EOT)
    assert out == [CancelTimer(), TransferEnded()]
    assert r.idle


# -- timers and limits -------------------------------------------------------------

def test_timeout_while_receiving_aborts_and_discards_the_incomplete_message():
    r = started()
    r.feed(b"".join(frames("E5")[:3]))
    assert r.timeout() == [CancelTimer(), Aborted("no frame within 30 s")]
    assert r.idle
    out = r.feed(ENQ + b"".join(frames("E6")))
    assert received(out) == [records("E6")]


def test_timeout_when_idle_does_nothing():
    assert Receiver().timeout() == []


def test_frame_timer_is_configurable():
    r = Receiver(ReceiverConfig(frame_timeout=0.5))
    assert r.feed(ENQ) == [Send(ACK), SetTimer(0.5)]


def test_too_big_message_aborts_asks_sender_to_stop_and_drains_until_eot():
    cfg = ReceiverConfig(max_message_bytes=100)
    r = started(cfg)
    fs = frames("E5")
    out = r.feed(fs[0])
    assert sends(out) == ACK
    out = r.feed(fs[1])
    assert out == [Aborted("message larger than 100 bytes"), Send(EOT), SetTimer(30.0)]
    assert r.state == Receiver.DISCARDING
    out = r.feed(b"".join(fs[2:]))
    assert sends(out) == ACK * 4 and received(out) == []
    assert r.feed(EOT) == [CancelTimer(), TransferEnded()]
    assert r.idle


def test_too_big_frame_aborts():
    r = started(ReceiverConfig(max_frame_bytes=50))
    out = r.feed(frames("E5")[0])
    assert out[0] == Aborted("frame longer than 50 bytes")
    assert Send(EOT) in out


def test_new_enq_while_discarding_restarts_cleanly():
    r = started(ReceiverConfig(max_message_bytes=10))
    r.feed(frames("E5")[0])
    assert r.state == Receiver.DISCARDING
    out = r.feed(ENQ)
    assert Send(ACK) in out and r.state == Receiver.RECEIVING


def test_interrupt_answers_eot_instead_of_ack_once():
    r = started()
    r.request_interrupt()
    assert r.feed(frames("E5")[0]) == [Send(EOT), SetTimer(30.0)]
    assert r.feed(frames("E5")[1]) == ACKED


# -- confirmation (ACK only after the message is stored) ---------------------------

def test_confirm_mode_holds_the_ack_until_accept():
    r = started(ReceiverConfig(confirm_messages=True))
    fs = frames("E8")
    out = r.feed(b"".join(fs))
    assert received(out) == [records("E8")]
    assert sends(out) == ACK * 2                       # the L frame is not yet acknowledged
    assert r.state == Receiver.CONFIRMING
    assert r.feed(EOT) == []                           # held
    out = r.accept()
    assert out == [Send(ACK), SetTimer(30.0), CancelTimer(), TransferEnded()]
    assert r.idle


def test_confirm_mode_reject_naks_and_the_retransmission_is_delivered_again():
    r = started(ReceiverConfig(confirm_messages=True))
    fs = frames("E7")
    r.feed(b"".join(fs))
    assert r.reject() == NAKED
    out = r.feed(fs[-1])
    assert received(out) == [records("E7")]
    assert sends(r.accept()) == ACK


def test_confirm_mode_reject_keeps_the_etb_frames_before_the_last():
    # A message framed as one unit split by ETB: after a NAK of its last (ETX)
    # frame, only that frame is resent, so the text of the earlier frames must
    # be kept; delivering the last frame alone would store a truncated message.
    msg = records("E5")
    fs = encode_records([msg], 1, 40)
    assert len(fs) > 2
    r = started(ReceiverConfig(confirm_messages=True))
    out = r.feed(b"".join(fs))
    assert received(out) == [msg]
    assert r.reject() == NAKED
    out = r.feed(fs[-1])
    assert received(out) == [msg]
    assert sends(r.accept()) == ACK


def test_accept_and_reject_outside_confirmation_do_nothing():
    r = Receiver()
    assert r.accept() == [] and r.reject() == []


def test_timeout_while_confirming_aborts():
    r = started(ReceiverConfig(confirm_messages=True))
    r.feed(b"".join(frames("E8")))
    assert r.timeout() == [CancelTimer(), Aborted("no frame within 30 s")]
    assert r.accept() == []
