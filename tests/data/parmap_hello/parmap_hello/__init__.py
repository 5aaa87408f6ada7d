"""A third-party adapter found by name through the ``parmap.adapters`` entry point group."""

from __future__ import annotations

from concurrent.futures import Future

from parmap import Chunk, ChunkResult, Job, SerialAdapter

CHUNKS: list[int] = []


class HelloAdapter(SerialAdapter):
    """Runs chunks serially, and remembers where each chunk started."""

    def __init__(self, workers: int | None = None) -> None:  # noqa: ARG002 - the factory protocol
        super().__init__()

    def submit(self, job: Job, chunk: Chunk) -> Future[ChunkResult]:
        CHUNKS.append(chunk.start)
        return super().submit(job, chunk)
