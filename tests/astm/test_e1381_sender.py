"""Byte-level tests of the E1381 sender, one per state transition."""
from __future__ import annotations

import pytest

from adapters.astm.actions import (Aborted, CancelTimer, Interrupted, LineYielded, Send,
                                   SetTimer, TransferComplete)
from adapters.astm.e1381 import Sender, SenderConfig
from adapters.astm.frames import ACK, ENQ, EOT, NAK
from astm_data import frames, records

BID = [Send(ENQ), SetTimer(15.0)]
DONE = [Send(EOT), CancelTimer(), TransferComplete()]


def bidding(name="E8", **config) -> Sender:
    s = Sender(SenderConfig(**config))
    assert s.send([records(name)]) == BID
    return s


def test_send_bids_with_enq_and_starts_the_ack_timer():
    s = Sender()
    assert s.send([records("E8")]) == BID
    assert s.state == Sender.BIDDING


def test_whole_transfer_of_e5_sends_exactly_the_domain_frames_then_eot():
    s = bidding("E5")
    sent = []
    for _ in frames("E5"):
        actions = s.feed(ACK)
        sent += [a.data for a in actions if isinstance(a, Send)]
    assert sent == frames("E5")
    assert s.feed(ACK) == DONE
    assert s.idle


def test_empty_transfer_ends_after_the_bid():
    s = Sender()
    assert s.send([]) == BID
    assert s.feed(ACK) == DONE


def test_send_while_busy_is_a_programming_error():
    s = bidding()
    with pytest.raises(RuntimeError):
        s.send([records("E8")])


def test_unknown_role_is_refused():
    with pytest.raises(ValueError):
        Sender(SenderConfig(role="observer"))


# -- establishment ---------------------------------------------------------------

def test_nak_to_the_bid_waits_then_bids_again():
    s = bidding()
    assert s.feed(NAK) == [SetTimer(10.0)]
    assert s.state == Sender.WAITING
    assert s.feed(ACK) == []                       # nothing counts while waiting
    assert s.timeout() == BID


def test_receiver_busy_too_often_gives_up_without_eot():
    s = bidding(max_bids=2)
    s.feed(NAK)
    s.timeout()
    assert s.feed(NAK) == [CancelTimer(), Aborted("receiver busy after 2 bids")]
    assert s.idle


def test_no_answer_to_the_bid_ends_with_eot():
    s = bidding()
    assert s.timeout() == [Send(EOT), CancelTimer(), Aborted("no answer to ENQ within 15 s")]
    assert s.idle


def test_contention_computer_yields_and_bids_again_after_the_wait():
    s = bidding(role="computer")
    assert s.feed(ENQ) == [SetTimer(20.0), LineYielded()]
    assert s.state == Sender.YIELDED
    assert s.feed(ACK) == []
    assert s.timeout() == BID


def test_contention_instrument_keeps_priority_and_bids_again_soon():
    s = bidding(role="instrument")
    assert s.feed(ENQ) == [SetTimer(1.0)]
    assert s.timeout() == BID


def test_contention_wait_is_configurable():
    s = bidding(role="computer", contention_wait=0.25)
    assert s.feed(ENQ)[0] == SetTimer(0.25)


def test_garbage_while_bidding_is_ignored():
    s = bidding()
    assert s.feed(b"xyz\r\n") == []
    assert s.state == Sender.BIDDING


# -- transfer -------------------------------------------------------------------

def test_nak_resends_the_same_frame():
    s = bidding()
    first = s.feed(ACK)
    assert s.feed(NAK) == first
    assert s.stats["retransmissions"] == 1


def test_six_failures_of_one_frame_end_the_transfer_with_eot():
    s = bidding()
    s.feed(ACK)
    for _ in range(5):
        assert Send(frames("E8")[0]) in s.feed(NAK)
    assert s.feed(NAK) == [Send(EOT), CancelTimer(), Aborted("frame failed 6 times")]
    assert s.idle


def test_retry_limit_is_configurable():
    s = bidding(max_attempts=2)
    s.feed(ACK)
    s.feed(NAK)
    assert s.feed(NAK)[0] == Send(EOT)


def test_ack_timeout_retransmits_by_default():
    s = bidding()
    first = s.feed(ACK)
    assert s.timeout() == first
    assert s.stats["timeouts"] == 1


def test_ack_timeouts_count_against_the_retry_limit():
    s = bidding(max_attempts=3)
    s.feed(ACK)
    s.timeout()
    s.feed(NAK)
    assert s.timeout()[-1] == Aborted("frame failed 3 times")


def test_strict_e1381_timeout_ends_the_transfer():
    s = bidding(retransmit_on_timeout=False)
    s.feed(ACK)
    assert s.timeout() == [Send(EOT), CancelTimer(),
                           Aborted("no answer to frame within 15 s")]


def test_eot_instead_of_ack_is_an_interrupt():
    s = bidding("E5")
    s.feed(ACK)
    s.feed(ACK)
    assert s.feed(EOT) == [Send(EOT), CancelTimer(), Interrupted(4)]
    assert s.idle


def test_eot_on_the_last_frame_is_a_normal_end():
    s = bidding("E8")
    s.feed(ACK * 3)
    assert s.feed(EOT) == DONE


def test_interrupt_can_be_ignored():
    s = bidding("E8", honour_interrupt=False)
    s.feed(ACK)
    assert s.feed(EOT) == [Send(frames("E8")[1]), SetTimer(15.0)]


def test_garbage_while_sending_is_ignored_not_taken_for_nak():
    s = bidding()
    s.feed(ACK)
    assert s.feed(b"\r\nxx") == []
    assert s.stats["retransmissions"] == 0


def test_idle_sender_ignores_input_and_timeouts():
    s = Sender()
    assert s.feed(ACK + NAK + ENQ + EOT) == []
    assert s.timeout() == []


def test_frames_are_numbered_from_one_after_each_enq():
    s = Sender()
    for _ in range(2):
        s.send([records("E8")])
        sent = [a.data for a in s.feed(ACK * 3) if isinstance(a, Send)]
        assert [f[1:2] for f in sent] == [b"1", b"2", b"3"]
        assert s.feed(ACK)[-1] == TransferComplete()


def test_current_frame_reports_the_frame_in_flight():
    s = bidding("E5")
    s.feed(ACK * 3)
    assert s.current_frame == 2
