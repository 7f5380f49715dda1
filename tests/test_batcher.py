"""The batcher on its own, with the real shipped model: streams share model steps, a step waits at most max_wait for
more streams, long messages are decoded in slices served round-robin, pending audio is counted, and stream slots
are counted in one place."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from asr.audio import SAMPLE_RATE, load_audio
from asr.recognizer import StreamingRecognizer
from asr.transcribe import transcribe_audio
from server.batcher import Batcher, StreamRefused
from server.metrics import Metrics


def steps_and_streams(metrics: Metrics) -> tuple[float, float]:
    """(model steps run, streams summed over those steps), from the batch size histogram."""
    samples = {s.name: s.value for m in metrics.batch_size.collect() for s in m.samples}
    return samples["asr_batch_size_count"], samples["asr_batch_size_sum"]


def run(coroutine_function, *args):
    return asyncio.run(coroutine_function(*args))


@pytest.mark.parametrize("max_batch, streams, expected", [
    (8, 4, (1, 4)),  # every open stream had audio: one step of four, without waiting out max_wait
    (2, 5, (3, 5)),  # max_batch splits the step: 2 + 2 + 1
])
def test_ready_streams_share_model_steps_of_at_most_max_batch(stream_model, max_batch, streams, expected):
    async def main():
        metrics = Metrics()
        batcher = Batcher(stream_model, max_batch=max_batch, max_wait=5.0, metrics=metrics)
        batcher.start()
        opened = [batcher.open_stream("10.0.0.1") for _ in range(streams)]
        chunk = np.zeros(SAMPLE_RATE // 5, dtype=np.float32)
        await asyncio.gather(*(batcher.submit(s, StreamingRecognizer(stream_model), chunk) for s in opened))
        await batcher.stop()
        return steps_and_streams(metrics)

    assert run(main) == expected


def test_a_step_waits_at_most_max_wait_for_more_streams(stream_model):
    max_wait = 1.0

    async def reply_time(open_streams: int) -> float:
        batcher = Batcher(stream_model, max_batch=8, max_wait=max_wait)
        batcher.start()
        streams = [batcher.open_stream("10.0.0.1") for _ in range(open_streams)]
        started = time.perf_counter()
        await batcher.submit(streams[0], StreamingRecognizer(stream_model), np.zeros(3200, dtype=np.float32))
        elapsed = time.perf_counter() - started
        await batcher.stop()
        return elapsed

    alone = run(reply_time, 1)  # the only open stream: nothing to wait for
    waiting = run(reply_time, 3)  # two more open streams that send nothing: it waits for them, max_wait long
    assert waiting >= max_wait
    assert waiting < max_wait + 3 * alone + 2.0  # ... and then goes on without them
    assert alone < waiting - 0.5 * max_wait


def test_long_messages_are_decoded_in_slices_round_robin(stream_model, long_speech):
    """One stream's 20 s message takes 20 one-second slices; a 200 ms chunk of another stream, sent after it,
    is answered after one shared step, not after the whole long message. Slicing changes no text."""
    audio = load_audio(long_speech)

    async def main():
        metrics = Metrics()
        batcher = Batcher(stream_model, max_batch=8, max_wait=0.0, slice_seconds=1.0, metrics=metrics)
        batcher.start()
        fast, clean = batcher.open_stream("10.0.0.1"), batcher.open_stream("10.0.0.2")
        done_order = []

        async def send(stream, samples, name, last):
            finals = await batcher.submit(stream, StreamingRecognizer(stream_model), samples, last=last)
            done_order.append(name)
            return finals

        long_job = asyncio.ensure_future(send(fast, audio, "long", True))
        await asyncio.sleep(0)  # the long message is in line first
        await send(clean, np.zeros(SAMPLE_RATE // 5, dtype=np.float32), "short", False)
        steps_when_short_done = steps_and_streams(metrics)[0]
        assert fast.pending_bytes > 0 and batcher.pending_bytes == fast.pending_bytes  # counted while decoding
        finals = await long_job
        steps, _ = steps_and_streams(metrics)
        await batcher.stop()
        return done_order, steps_when_short_done, steps, finals, batcher.pending_bytes

    done_order, short_steps, steps, finals, pending = run(main)
    assert done_order == ["short", "long"] and short_steps <= 2
    assert steps >= len(audio) / SAMPLE_RATE - 1  # one slice of at most 1 s per step
    assert " ".join(f.text for f in finals if f.text) == transcribe_audio(stream_model, audio).text
    assert pending == 0


def test_stream_slots_are_counted_in_one_place(stream_model):
    async def main():
        batcher = Batcher(stream_model, max_streams=3, max_streams_per_address=2)
        a1, a2 = batcher.open_stream("10.0.0.1"), batcher.open_stream("10.0.0.1")
        with pytest.raises(StreamRefused) as caught:
            batcher.open_stream("10.0.0.1")
        assert caught.value.reason == "address" and "10.0.0.1" in str(caught.value)
        b = batcher.open_stream("10.0.0.2")
        assert batcher.full and len(batcher.streams) == 3
        with pytest.raises(StreamRefused) as caught:
            batcher.open_stream("10.0.0.3")
        assert caught.value.reason == "full"
        for stream in (a1, a2, b, b):  # closing twice is harmless
            batcher.close_stream(stream)
        assert not batcher.streams
        batcher.open_stream("10.0.0.1")

    run(main)
