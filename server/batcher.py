"""Many streams, one model step, fair to each: the batcher opens and closes streams (it holds the one count of open
streams and of streams per client address), takes each stream's audio, and decodes it in bounded slices.

A model step never takes more than `slice_seconds` of one stream's audio. Streams with audio still to decode wait
in one line and are served round-robin, up to `max_batch` per step (waiting at most `max_wait` seconds for more
streams to have audio); a stream whose message is not used up goes to the back of the line. So a client that sends
33 s of audio in one message gets its reply after 33 slices, while every other stream's 200 ms chunk goes through
in the next step: a fast sender slows only itself. A step runs in two single-thread executors, so the event loop
keeps answering pings and other clients: the model (`asr.recognizer.model_step`: log-mel and the batched LSTM, which
leaves Python's lock while torch computes) on one, each stream's endpointing and search (`search_step`: the beam
search holds the lock) on the other, in step order. The next model step runs while the last one's search does, so
the search's cost overlaps the model's instead of adding to it; a message is answered once its last slice has been
searched. With two passes (`asr serve --final-model`), the finals of the messages a step answers go through the
second pass together, in a third thread: a long utterance's second pass delays other finals, never the partials.

Uploads (`submit(..., background=True)`: a file posted to the OpenAI-compatible endpoint, decoded as a stream of its
own) wait in a second line that is served only when no live stream has audio waiting: live streams outrank them,
and an upload takes whatever the live streams leave (at most one slice per upload per step).

Each stream has at most one message here at a time (the app reads a connection's next message only after replying
to this one), so the audio held per stream is bounded by the message size limit; `asr_pending_audio_bytes` counts
it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from asr.decoding import Transcript
from asr.model import AcousticModel
from asr.recognizer import StepOutput, StreamingRecognizer, model_step, search_step
from asr.second_pass import PendingFinal, SecondPass

log = logging.getLogger("server")

SLICE_SECONDS = 1.0  # the most audio of one stream that one model step takes
_EMPTY = np.zeros(0, dtype=np.float32)


class StreamRefused(Exception):
    """No stream for this client now: the server is full, or its address has as many streams as it may."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason  # "full" or "address"


@dataclass(eq=False)
class Stream:
    """One open stream, as the batcher sees it."""

    address: str
    pending_bytes: int = 0  # float32 audio received and not yet decoded


@dataclass(eq=False)
class Job:
    """One message's audio for one stream: decoded slice by slice; `future` gets the finals once it is used up.
    `last` ends the stream: the finals then end with its last utterance."""

    stream: Stream
    recognizer: StreamingRecognizer
    samples: np.ndarray
    last: bool
    future: asyncio.Future = field(repr=False)
    finals: list[Transcript] = field(default_factory=list)
    pending: int = 0  # bytes of `samples` counted in the stream's pending_bytes (kept by the event loop's thread)
    settled: bool = False  # its caller has its answer (or went away): no more accounting
    background: bool = False  # an upload's: served only when no live stream's audio waits


class Batcher:
    def __init__(self, model: AcousticModel, max_batch: int = 32, max_wait: float = 0.01, max_streams: int = 128,
                 max_streams_per_address: int = 0, slice_seconds: float = SLICE_SECONDS, metrics=None,
                 final_model: SecondPass | None = None):
        self.model = model
        self.final_model = final_model  # the second pass of the streams' finals, if any
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_streams = max_streams
        self.max_streams_per_address = max_streams_per_address
        self.slice_seconds = slice_seconds
        self.metrics = metrics
        self.streams: set[Stream] = set()
        self._per_address: Counter[str] = Counter()
        self._line: deque[Job] = deque()  # jobs with audio still to decode, served round-robin
        self._background: deque[Job] = deque()  # uploads' jobs: served when the line is empty
        self._searches = 0  # steps whose search has not finished
        self._arrived = asyncio.Event()
        self._model_executor = ThreadPoolExecutor(1, thread_name_prefix="model-step")
        self._search_executor = ThreadPoolExecutor(1, thread_name_prefix="search-step")
        self._final_executor = ThreadPoolExecutor(1, thread_name_prefix="second-pass")
        self._second_passes: set[asyncio.Task] = set()  # answering jobs once their finals' second pass is done
        self._consumer: asyncio.Task | None = None
        if metrics is not None:  # summed when scraped, not updated on every message
            metrics.pending_audio_bytes.set_function(lambda: self.pending_bytes)

    # --- streams ----------------------------------------------------------------------------------------------------
    @property
    def full(self) -> bool:
        return len(self.streams) >= self.max_streams

    def check_room(self, address: str) -> None:
        """Raises StreamRefused if a stream from `address` would be refused now."""
        if self.full:
            raise StreamRefused("full", f"server is full ({self.max_streams} streams); try again later")
        limit = self.max_streams_per_address
        if limit and self._per_address[address] >= limit:
            raise StreamRefused("address", f"{address} already has {limit} open streams, the most one client "
                                "address may have; close one or try again later")

    def open_stream(self, address: str) -> Stream:
        """A new stream for a client at `address`, or StreamRefused."""
        self.check_room(address)
        stream = Stream(address)
        self.streams.add(stream)
        self._per_address[address] += 1
        if self.metrics is not None:
            self.metrics.active_streams.inc()
            self.metrics.streams.inc()
        return stream

    def close_stream(self, stream: Stream) -> None:
        if stream not in self.streams:
            return
        self.streams.discard(stream)
        self._per_address[stream.address] -= 1
        if self._per_address[stream.address] <= 0:
            del self._per_address[stream.address]
        if self.metrics is not None:
            self.metrics.active_streams.dec()

    def _release(self, stream: Stream, nbytes: int) -> None:
        """`nbytes` of the stream's pending audio are decoded or dropped (negative: received)."""
        stream.pending_bytes -= nbytes

    @property
    def pending_bytes(self) -> int:
        return sum(stream.pending_bytes for stream in self.streams)

    # --- lifecycle --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._consumer = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        for task in list(self._second_passes):
            task.cancel()
        for job in (*self._line, *self._background):
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server stopped"))
        self._line.clear()
        self._background.clear()
        self._model_executor.shutdown(wait=True)
        self._search_executor.shutdown(wait=True)
        self._final_executor.shutdown(wait=True)

    # --- audio ------------------------------------------------------------------------------------------------------
    async def submit(self, stream: Stream, recognizer: StreamingRecognizer, samples: np.ndarray,
                     last: bool = False, background: bool = False) -> list[Transcript]:
        """Decode one message's audio (at the stream's rate); returns the utterances it finalised (ending with the
        stream's last utterance when `last`). One job per stream at a time (the recognizer is not thread-safe).
        `background`: an upload's audio, decoded only while no live stream's audio waits."""
        samples = np.asarray(samples, dtype=np.float32)
        job = Job(stream, recognizer, samples, last, asyncio.get_running_loop().create_future(), pending=samples.nbytes,
                  background=background)
        self._release(stream, -job.pending)
        (self._background if background else self._line).append(job)
        self._arrived.set()
        try:
            return await job.future
        finally:  # done, failed, or the connection went away: what is left of its audio no longer counts
            self._release(stream, job.pending)
            job.pending, job.settled = 0, True

    async def finish(self, stream: Stream, recognizer: StreamingRecognizer, background: bool = False) -> list[Transcript]:
        """No more audio comes for this stream: the utterances still open, its last one included (every protocol's
        end of a stream)."""
        return await self.submit(stream, recognizer, _EMPTY, last=True, background=background)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._line and not (self._background and not self._searches):
                # Nothing live waits, and uploads wait for the last step's search: one search of theirs at a time,
                # so that a live stream's search never queues behind a backlog of uploads' searches.
                self._arrived.clear()
                await self._arrived.wait()
            # Wait a little for more streams to have audio, unless every open stream (up to max_batch) already has.
            deadline = loop.time() + self.max_wait
            while self._line and len(self._line) < min(self.max_batch, len(self.streams)) and loop.time() < deadline:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), deadline - loop.time())
                except asyncio.TimeoutError:
                    break
            line = self._line or self._background  # live streams first; uploads when none of them waits
            batch = [line.popleft() for _ in range(min(self.max_batch, len(line)))]
            batch = [job for job in batch if not job.future.done()]  # a connection that went away
            if not batch:
                continue
            try:
                errors, fed, outputs = await loop.run_in_executor(self._model_executor, self._model_step, batch)
            except Exception as error:  # the model step itself failed: every stream in it gets the error
                log.exception("model step failed for a batch of %d streams", len(batch))
                errors, fed, outputs = [error] * len(batch), [], []
            search = loop.run_in_executor(self._search_executor, self._search_step, fed, outputs)
            self._searches += 1
            answered = []  # jobs whose audio this step finished: answered once its search is done
            for job, error in zip(batch, errors):
                if job.settled or job.future.done():
                    continue
                self._release(job.stream, job.pending - job.samples.nbytes)
                job.pending = job.samples.nbytes
                if error is not None:
                    job.future.set_exception(error)
                elif len(job.samples):  # more of this message: back of its line (its search goes on)
                    (self._background if job.background else self._line).append(job)
                else:
                    answered.append(job)
            search.add_done_callback(lambda done, fed=fed, answered=answered: self._searched(fed, answered, done))

    def _searched(self, fed: list[Job], answered: list[Job], done: asyncio.Future) -> None:
        """In the event loop, when a step's search is done: answer the jobs whose audio that step finished, once
        their finals are through the second pass (a failed search fails every job of the step)."""
        self._searches -= 1
        self._arrived.set()  # uploads may go on
        error = RuntimeError("the server stopped") if done.cancelled() else done.exception()
        if error is not None:
            log.error("search step failed for a batch of %d streams: %s: %s", len(fed), type(error).__name__, error)
            for job in fed:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        answered = [job for job in answered if not job.future.done()]
        if any(isinstance(final, PendingFinal) for job in answered for final in job.finals):
            task = asyncio.get_running_loop().create_task(self._answer_after_second_pass(answered))
            self._second_passes.add(task)
            task.add_done_callback(self._second_passes.discard)
            return
        for job in answered:
            job.future.set_result(job.finals)

    async def _answer_after_second_pass(self, jobs: list[Job]) -> None:
        try:
            finals = await self.second_pass([final for job in jobs for final in job.finals])
        except (Exception, asyncio.CancelledError) as error:
            if not isinstance(error, asyncio.CancelledError):
                log.exception("second pass failed for %d streams", len(jobs))
            error = RuntimeError("the server stopped") if isinstance(error, asyncio.CancelledError) else error
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        for job in jobs:
            job.finals, finals = finals[: len(job.finals)], finals[len(job.finals) :]
            if not job.future.done():
                job.future.set_result(job.finals)

    async def second_pass(self, finals: list[Transcript]) -> list[Transcript]:
        """`finals` with every PendingFinal (of any streams) through the second pass, as one batch in its own
        thread; the others as they are."""
        pending = sum(isinstance(final, PendingFinal) for final in finals)
        if not pending:
            return finals
        if self.final_model is None:
            raise RuntimeError("a stream has pending finals but the server has no second pass")
        start = time.perf_counter()
        finals = await asyncio.get_running_loop().run_in_executor(self._final_executor, self.final_model.resolve,
                                                                  finals)
        if self.metrics is not None:
            self.metrics.observe_second_pass(pending, time.perf_counter() - start)
        return finals

    def _model_step(self, batch: list[Job]) -> tuple[list[Exception | None], list[Job], list[StepOutput]]:
        """In the model thread: feed each stream its next slice, run one batched model step."""
        errors: list[Exception | None] = [None] * len(batch)
        fed = []
        for i, job in enumerate(batch):
            size = max(1, int(self.slice_seconds * job.recognizer.sample_rate))
            piece, job.samples = job.samples[:size], job.samples[size:]
            try:
                job.recognizer.accept_audio(piece, last=job.last and not len(job.samples))
                fed.append(job)
            except Exception as error:  # bad audio of one stream never reaches the others' step
                log.warning("stream audio rejected: %s: %s", type(error).__name__, error)
                errors[i] = error
                job.samples = job.samples[:0]
        start = time.perf_counter()
        outputs = model_step(self.model, [job.recognizer for job in fed])
        if self.metrics is not None:
            self.metrics.observe_step(len(fed), time.perf_counter() - start)
        return errors, fed, outputs

    def _search_step(self, fed: list[Job], outputs: list[StepOutput]) -> None:
        """In the search thread, in the order of the model steps: endpointing and search of one step's output."""
        start = time.perf_counter()
        for job, stream_finals in zip(fed, search_step([job.recognizer for job in fed], outputs)):
            job.finals += stream_finals
        if self.metrics is not None and fed:
            self.metrics.search_seconds.observe(time.perf_counter() - start)
