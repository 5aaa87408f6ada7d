"""A producer/consumer pipeline without queues: a generator feeds ``pmap(..., lazy=True)``.

The queue-based version starts consumer processes that take work from a task queue and put
results on a result queue, and the main process drains it. Here the producer is a generator,
the consumers are pmap's workers, and the consumer loop is a ``for`` over the lazy results.
pmap reads the producer only as far as its window of chunks in flight needs (2 x workers
chunks), so the producer never runs far ahead of the consumer: memory stays bounded however
many records flow through, and the producer may even be endless.

    .venv/bin/python examples/queue_pipeline.py [--records 200000] [--workers N]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import this script's imports too

from workloads import positive_int

import parmap
from parmap import pmap


class Producer:
    """An endless stream of records, counting how many it has handed out."""

    def __init__(self) -> None:
        self.produced = 0

    def records(self) -> Iterator[str]:
        for n in itertools.count():
            self.produced += 1
            yield f"record {n}: {'x' * (n % 50)}"


def digest(record: str) -> str:
    """The work on one record (in a worker process)."""
    return hashlib.sha256(record.encode()).hexdigest()[:8]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=positive_int, default=200_000, help="how many records to consume")
    parser.add_argument("--workers", type=positive_int, default=parmap.available_cpus())
    parser.add_argument("--chunksize", type=positive_int, default=None, help="default: automatic")
    args = parser.parse_args()

    producer = Producer()
    consumed = ahead = 0
    checksum = 0
    results = pmap(digest, producer.records(), workers=args.workers, chunksize=args.chunksize, lazy=True)
    with closing(results):  # stops the workers when the loop ends, even by break or an exception
        for result in results:  # the consumer loop
            consumed += 1
            checksum ^= int(result, 16)
            ahead = max(ahead, producer.produced - consumed)
            if consumed == args.records:
                break  # the producer is endless: the consumer decides when to stop

    window = 2 * args.workers
    chunk = f"{args.chunksize} items" if args.chunksize else "at most 10,000 items (automatic, no len())"
    print(f"consumed {consumed} records (checksum {checksum:08x}) from an endless producer")
    print(f"the producer was at most {ahead} records ahead of the consumer")
    print(f"bound: a window of {window} chunks (2 x {args.workers} workers) of {chunk}")


if __name__ == "__main__":
    main()
