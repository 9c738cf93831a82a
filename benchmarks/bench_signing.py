"""CPU cost of seals per message: seal + open of a no-op job's messages, without Redis.

    .venv/bin/python benchmarks/bench_signing.py [--n 200000]

For each kind a no-op job's life touches (the dispatch message, its ack, and an intake request
of one job), it times in CPU time encoding alone (what fleet does without a key) and encoding
+ seal + open, and prints microseconds per message: the extra CPU a job costs with signing on,
which the machine's load blurs less than it blurs an end-to-end drain.
"""

from __future__ import annotations

import argparse
import time

import orjson

from fleet.protocol.signing import ACK, DISPATCH, INTAKE, Seal

MESSAGES = {
    DISPATCH: {"id": "01JF2K5V8Q3ZP7H4N6T9W2X5YB", "n": 1, "f": "peer_tasks:noop",
               "a": [1764270000.123], "k": {}, "to": 180.0, "q": "default",
               "eq": 1764270000000, "ts": 1764270000012},
    ACK: {"id": "01JF2K5V8Q3ZP7H4N6T9W2X5YB", "n": 1, "o": "ok", "r": None,
          "w": "host-a:4242:9f1c", "h": "host-a", "st": 1764270000015, "ft": 1764270000020,
          "eq": 1764270000000},
    INTAKE: {"req": "5b0c1d2e3f40516273849a0b1c2d3e4f", "ts": 1764270000000,
             "jobs": [{"id": "01JF2K5V8Q3ZP7H4N6T9W2X5YB", "f": "peer_tasks:noop",
                       "a": [1764270000.123], "q": "default"}]},
}


def per_message_us(n: int, work) -> float:
    started = time.process_time()  # CPU time: waiting for a busy core does not count
    for _ in range(n):
        work()
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="messages per measurement")
    args = parser.parse_args()
    print(f"{'kind':<10} {'bytes':>6} {'encode us':>10} {'+seal+open us':>14} {'extra us':>9}")
    per_job = 0.0
    for kind, message in MESSAGES.items():
        seal = Seal((b"k" * 32,), kind, "bench")

        def plain(message=message) -> bytes:
            return orjson.dumps(message)

        def sealed(message=message, seal=seal) -> bytes:
            return seal.open(seal.seal(orjson.dumps(message), 1764270000012))[1]

        base = min(per_message_us(args.n, plain) for _ in range(3))
        both = min(per_message_us(args.n, sealed) for _ in range(3))
        per_job += (both - base) if kind in (DISPATCH, ACK) else 0.0
        size = len(orjson.dumps(message))
        print(f"{kind.decode():<10} {size:>6} {base:>10.2f} {both:>14.2f} {both - base:>9.2f}")
    print(f"extra CPU per job (its dispatch message and its ack; an intake request carries up "
          f"to 1,000 jobs): {per_job:.2f} us")


if __name__ == "__main__":
    main()
