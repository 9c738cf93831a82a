"""Seals (fleet/protocol/signing.py) and the controller's gate (fleet/controller/gate.py)."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from fleet.config import Settings, describe, setting_names
from fleet.controller.gate import Gate
from fleet.controller.options import IntakeOptions
from fleet.protocol.signing import (
    ACK,
    BEAT,
    CONTROL,
    DISPATCH,
    INTAKE,
    RECEIPT,
    BurstLog,
    Seal,
    SignatureError,
    keys_for,
)

BODY = b'{"id":"j","n":1}'
NOW = 1_800_000_000_000


def test_seal_is_a_keyed_blake2b_over_kind_namespace_context_time_and_body():
    """The head is ~1.<ts>.<hex keyed BLAKE2b-256>. and the MAC covers every part."""
    sealed = Seal((b"key",), ACK, "ns").seal(BODY, 42, b"ctx")
    mac = hashlib.blake2b(b"ack.ns.ctx.42." + BODY, key=b"key", digest_size=32).hexdigest()
    mac = mac.encode()
    assert sealed == b"~1.42." + mac + b"." + BODY
    assert Seal((b"key",), ACK, "ns").open(sealed, b"ctx") == (42, BODY)


def test_without_a_key_messages_pass_unchanged():
    """No key: seal returns the body itself and open takes anything."""
    seal = Seal((), ACK, "ns")
    assert not seal and seal.seal(BODY, 1) is BODY and seal.open(b"x") == (0, b"x")


@pytest.mark.parametrize("other", [
    Seal((b"other",), ACK, "ns"), Seal((b"key",), BEAT, "ns"), Seal((b"key",), ACK, "ns2")])
def test_a_seal_does_not_open_with_another_key_kind_or_namespace(other):
    """A seal made with another key, for another kind or another namespace is refused."""
    with pytest.raises(SignatureError, match="does not match"):
        Seal((b"key",), ACK, "ns").open(other.seal(BODY, 1))


def test_altered_body_time_or_context_is_refused():
    """Changing one byte of the body, the head's time, or the context breaks the seal."""
    seal = Seal((b"key",), RECEIPT, "ns")
    sealed = seal.seal(BODY, 1000, b"req-1")
    for raw, context in ((sealed[:-2] + b"2}", b"req-1"), (sealed.replace(b"~1.1000", b"~1.9000"),
                         b"req-1"), (sealed, b"req-2")):
        with pytest.raises(SignatureError):
            seal.open(raw, context)


MAC0 = b"0" * 64


@pytest.mark.parametrize("raw", [BODY, b"", b"~1.", b"~1..", b"~1.12.", b"~1.-1." + MAC0 + b".",
                                 b"~1.1." + MAC0[1:], b"~1." + b"9" * 30 + b"." + MAC0 + b"."])
def test_unsigned_or_malformed_heads_are_refused_without_an_exception_of_another_type(raw):
    """Unsigned bytes, empty or cut heads, non-digit times: SignatureError, nothing else."""
    with pytest.raises(SignatureError):
        Seal((b"key",), INTAKE, "ns").open(raw)


def test_during_a_rotation_the_first_key_seals_and_both_open():
    """signing_key "new,old": messages sealed with the old key open, new ones use the new."""
    rotating = Seal.of(Settings(signing_key="new, old"), ACK)
    old = Seal((b"old",), ACK, "fleet").seal(BODY, 5)
    assert rotating.open(old) == (5, BODY)
    assert Seal((b"new",), ACK, "fleet").open(rotating.seal(BODY, 6)) == (6, BODY)


def test_role_keys_default_to_signing_key_and_override_it():
    """dispatch_key / worker_key / client_key fall back to signing_key."""
    settings = Settings(signing_key="shared", worker_key="w")
    assert keys_for(settings, DISPATCH) == keys_for(settings, INTAKE) == (b"shared",)
    assert keys_for(settings, ACK) == keys_for(settings, BEAT) == (b"w",)


# -- the gate ------------------------------------------------------------------------------

SETTINGS = Settings(signing_key="k", signing_window_s=60)


def sealed(kind: bytes, body: bytes, ts_ms: int, key: bytes = b"k") -> bytes:
    return Seal((key,), kind, "fleet").seal(body, ts_ms)


def test_gate_passes_good_requests_and_counts_every_bad_one_by_source():
    """Unsigned, wrongly keyed, too old and too new requests are dropped and counted."""
    gate = Gate(SETTINGS, NOW - 1000)
    good = sealed(INTAKE, b'{"req":"a"}', NOW)
    bad = [b'{"req":"b"}', sealed(INTAKE, BODY, NOW, b"guess"), sealed(INTAKE, BODY, NOW - 61_000),
           sealed(INTAKE, BODY, NOW + 61_000)]
    assert gate.intake([good, *bad], NOW) == [b'{"req":"a"}']
    assert gate.rejected["intake"] == 4 and gate.take_counts() == {"intake": 4}
    assert gate.take_counts() == {}


def test_gate_takes_a_control_request_once_and_none_sealed_before_the_start():
    """A control request replayed is refused and counted; a genuine one sealed before the
    controller started is not run but answered RESEND."""
    gate = Gate(SETTINGS, NOW - 1000)
    request = sealed(CONTROL, b'{"req":"c","cmd":"dead_purge"}', NOW - 10)
    assert len(gate.control([request], NOW)) == 1
    assert gate.control([request], NOW + 5) == []
    assert gate.control([sealed(CONTROL, b'{"req":"d"}', NOW - 2000)], NOW) == []
    assert gate.rejected["control"] == 1
    ((request_id, reply),) = gate.resend_replies()
    assert request_id == "d" and orjson.loads(reply)["error"].startswith("RESEND:")


def test_gate_refuses_a_heartbeat_older_than_one_seen_from_the_same_worker():
    """Beats: the newest per worker passes; an older one (a replay) is refused and counted;
    the same beat read twice still passes (the reconciler sees it has not moved); one sealed
    before the start is ignored without being counted (a restart always finds some)."""
    gate = Gate(SETTINGS, NOW - 5000)
    first, second = (sealed(BEAT, orjson.dumps({"id": "w1", "ts": t}), t) for t in (NOW - 2, NOW))
    assert gate.beats([first, second], NOW) == [orjson.dumps({"id": "w1", "ts": NOW})]
    assert gate.beats([second], NOW + 1) != []
    assert gate.beats([first], NOW + 2) == [] and gate.rejected["heartbeat"] == 1
    before_start = sealed(BEAT, orjson.dumps({"id": "w2"}), NOW - 6000)
    assert gate.beats([before_start], NOW) == [] and gate.rejected["heartbeat"] == 1


def test_gate_without_keys_passes_everything_as_is():
    """No key: the very same lists come back."""
    gate = Gate(Settings(), NOW)
    raws = [b"anything"]
    assert gate.intake(raws, NOW) is raws and gate.acks(raws, NOW) is raws
    assert gate.beats(raws, NOW) is raws and gate.control(raws, NOW) is raws
    assert gate.receipts([("r", b"{}")], NOW) == [("r", b"{}")]


@pytest.mark.parametrize("key", [b"k", b"k" * 64, b"k" * 65, "ключ".encode()])
def test_keys_of_any_length_seal_and_a_long_one_is_hashed_to_blake2b_size(key):
    """Short and 64-byte keys are used as they are; a longer one as its 64-byte BLAKE2b."""
    used = key if len(key) <= 64 else hashlib.blake2b(key).digest()
    expected = hashlib.blake2b(b"intake.n..7." + BODY, key=used, digest_size=32).hexdigest()
    assert Seal((key,), INTAKE, "n").seal(BODY, 7).split(b".")[2].decode() == expected


def test_a_worker_forgotten_while_its_key_was_gone_still_refuses_its_older_beats():
    """A beat DELeted for a read, then an older one SET back: still refused as a replay."""
    gate = Gate(SETTINGS, NOW - 5000)
    old, new = (sealed(BEAT, orjson.dumps({"id": "w1", "t": t}), t) for t in (NOW - 900, NOW))
    assert len(gate.beats([new], NOW)) == 1
    assert gate.beats([], NOW + 200) == []
    assert gate.beats([old], NOW + 400) == [] and gate.rejected["heartbeat"] == 1


def test_config_show_masks_keys_and_the_redis_password():
    """describe() shows *** for each key that is set and hides the URL's password."""
    settings = Settings(signing_key="topsecret", client_key="c1",
                        redis_url="redis://fleet:hunter2@redis:6379/0")
    shown = {name: value for name, value, _ in describe(settings, dict.fromkeys(
        setting_names(), "default"))}
    assert shown["signing_key"] == shown["client_key"] == "***" and shown["worker_key"] == ""
    assert shown["redis_url"] == "redis://fleet:***@redis:6379/0"
    assert "topsecret" not in str(shown) and "hunter2" not in str(shown)


def test_a_burst_of_rejections_is_logged_once_then_summed_up(caplog):
    """1,000 rejections in a burst: one line at once; the next line, a period later, counts
    every one held back, by source."""
    import logging

    burst = BurstLog(logging.getLogger("fleet.test"), every_s=0.0)
    burst.every_s = 3600.0
    with caplog.at_level(logging.WARNING, "fleet.test"):
        for _ in range(1000):
            burst.rejected("acks", "unsigned ack message")
    assert len(caplog.records) == 1 and "1 acks" in caplog.text
    burst.every_s, burst._next_s = 0.0, 0.0
    with caplog.at_level(logging.WARNING, "fleet.test"):
        burst.rejected("intake", "unsigned intake message")
    assert "999 acks, 1 intake" in caplog.records[-1].getMessage()


def test_gate_with_a_key_survives_oversized_items_from_every_source():
    """An item over the size limit is read as its size and first bytes (no seal to check):
    an oversized request passes to be answered with its rejection, an oversized ack (which
    would act on the record) is refused and counted, and none raises."""
    from fleet.transport import Oversized

    gate = Gate(SETTINGS, NOW - 1000)
    big_request = Oversized(90_000_000, sealed(INTAKE, b'{"req":"r-big","jobs":[', NOW)[:80])
    big_control = Oversized(90_000_000, sealed(CONTROL, b'{"req":"c-big"', NOW)[:80])
    big_ack = Oversized(90_000_000, sealed(ACK, b'{"id":"j","n":1,"o":"ok"', NOW)[:80])
    good = sealed(INTAKE, b'{"req":"a"}', NOW)
    assert gate.intake([big_request, good], NOW) == [big_request, b'{"req":"a"}']
    assert gate.control([big_control], NOW) == [big_control]
    assert gate.acks([big_ack, sealed(ACK, BODY, NOW)], NOW) == [BODY]
    assert gate.rejected["acks"] == 1 and gate.rejected["intake"] == 0


def test_an_oversized_sealed_request_is_answered_with_the_limit_by_its_id(tmp_path):
    """The request id is found after the seal's head, so the client learns at once."""
    from fleet.controller.intake import Intake
    from fleet.controller.journal import Journal
    from fleet.transport import Oversized
    from fleet.wal import open_log

    log = open_log(str(tmp_path / "data"))
    try:
        intake = Intake(Journal(log.table, log.writer),
                        IntakeOptions.of(Settings(max_message_bytes=1000)))
        head = sealed(INTAKE, b'{"req": "r-big", "jobs": [{"id": "a"', NOW)
        ((request_id, body),) = intake.handle([Oversized(5000, head)], NOW)
        assert request_id == "r-big"
        assert "5000 bytes; at most 1000 allowed" in orjson.loads(body)["error"]
    finally:
        log.close()
