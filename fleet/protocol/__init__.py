"""Every message fleet sends through Redis, each kind with its one encode/decode pair, used by
both its sender and its receiver (docs/protocol.md has the fields; tests/unit/test_protocol.py
checks the two against each other, so they cannot drift).

=================  ===========================  ==================  ======================
kind               sender -> receiver           module              protocol.md
=================  ===========================  ==================  ======================
intake request     client -> controller         ``intake``          §1
receipt            controller -> client         ``intake``          §1
dispatch message   controller -> worker         ``dispatch``        §2
ack                worker -> controller         ``ack``             §4
heartbeat          worker -> controller         ``heartbeat``       §5
control request    CLI, API -> controller       ``control``         §7
control reply      controller -> CLI, API       ``control``         §7
lease value        controller -> controllers    ``lease``           §6
=================  ===========================  ==================  ======================

Every message may be sealed (``signing`` here: a keyed-MAC head, checked before anything
is parsed); the encoders build the payload, and the sender seals it.

A decoder never raises on what a hostile or broken writer put in Redis: it returns None (or a
value with the bad fields cleared) and its caller counts and logs the drop.
"""
