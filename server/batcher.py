"""Many streams, one model step: connections put work on a queue; one consumer takes up to `max_batch` ready
streams (waiting at most `max_wait` seconds for more to arrive), runs `asr.recognizer.decode_streams` for all of them in a
single-thread executor (the event loop keeps answering pings and other clients), and resolves each stream's future.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from asr.decoding import Transcript
from asr.model import AcousticModel
from asr.recognizer import StreamingRecognizer, decode_streams

log = logging.getLogger("server")


@dataclass
class Job:
    """Feed `samples` (at the stream's rate) to one stream, then step it. `last` flushes the stream and finishes
    its last utterance (eof)."""

    recognizer: StreamingRecognizer
    samples: np.ndarray
    last: bool
    future: asyncio.Future = field(repr=False)


class Batcher:
    def __init__(self, model: AcousticModel, max_batch: int = 32, max_wait: float = 0.01, metrics=None):
        self.model = model
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.metrics = metrics
        self.streams = 0  # open streams: once each of them has a job queued, waiting longer gains nothing
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="model-step")
        self._consumer: asyncio.Task | None = None

    def start(self) -> None:
        self._consumer = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, recognizer: StreamingRecognizer, samples: np.ndarray,
                     last: bool = False) -> list[Transcript]:
        """Queue one stream's audio; returns the utterances it finalised (with the last one when `last`).
        At most one job per stream may be in flight (the recognizer is not thread-safe)."""
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Job(recognizer, samples, last, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(jobs) < min(self.max_batch, max(self.streams, 1)):
                if not self._queue.empty():
                    jobs.append(self._queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                job = await self._get(remaining)
                if job is None:
                    break
                jobs.append(job)
            jobs = [job for job in jobs if not job.future.done()]  # a connection that went away cancelled its own
            if not jobs:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._step, jobs)
            except Exception as error:  # the model step itself failed: every stream in it gets the error
                log.exception("model step failed for a batch of %d streams", len(jobs))
                results = [error] * len(jobs)
            for job, result in zip(jobs, results):
                if job.future.done():
                    continue
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    async def _get(self, timeout: float) -> Job | None:
        """The next job within `timeout` seconds, or None. Never loses a job that arrives as the time runs out."""
        getter = asyncio.ensure_future(self._queue.get())
        done, _ = await asyncio.wait({getter}, timeout=timeout)
        if not done:
            getter.cancel()
        try:
            return await getter
        except asyncio.CancelledError:
            if getattr(asyncio.current_task(), "cancelling", lambda: 0)():  # we are being stopped (Python >= 3.11)
                raise
            return None

    def _step(self, jobs: list[Job]) -> list[list[Transcript] | Exception]:
        """In the executor thread: feed each stream its audio, run one batched model step, finish eof streams."""
        fed, results = [], {}
        for job in jobs:
            try:
                job.recognizer.accept_audio(job.samples, last=job.last)
                fed.append(job)
            except Exception as error:  # bad audio of one stream never reaches the others' step
                log.warning("stream audio rejected: %s: %s", type(error).__name__, error)
                results[id(job)] = error
        start = time.perf_counter()
        finals = decode_streams(self.model, [job.recognizer for job in fed])
        if self.metrics is not None:
            self.metrics.observe_step(len(fed), time.perf_counter() - start)
        for job, stream_finals in zip(fed, finals):  # a finished stream's finals end with its last utterance
            results[id(job)] = stream_finals
        return [results[id(job)] for job in jobs]
