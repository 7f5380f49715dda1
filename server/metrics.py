"""Prometheus metrics of the server, in a registry of its own (two servers in one process never share counters)."""
from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.active_streams = Gauge("asr_active_streams", "Open websocket streams", registry=r)
        self.streams = Counter("asr_streams", "Streams opened", registry=r)
        self.stream_errors = Counter("asr_stream_errors", "Streams closed with an error, by close code",
                                     ["code"], registry=r)
        self.audio_seconds = Counter("asr_audio_seconds", "Seconds of audio received", registry=r)
        self.chunks = Counter("asr_chunks", "Binary audio messages received", registry=r)
        self.pending_audio_bytes = Gauge("asr_pending_audio_bytes", "Audio received and not yet decoded, all "
                                         "streams (float32 bytes; each stream holds at most one message)",
                                         registry=r)
        self.refused = Counter("asr_streams_refused", "Streams refused at the handshake, by reason", ["reason"],
                               registry=r)
        self.batch_size = Histogram("asr_batch_size", "Streams in one model step", buckets=BATCH_BUCKETS, registry=r)
        self.step_seconds = Histogram("asr_model_step_seconds", "Wall time of one batched model step",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.search_seconds = Histogram("asr_search_step_seconds", "Wall time of one step's endpointing and "
                                        "search, all its streams (beside the next model step)",
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.second_pass_utterances = Counter("asr_second_pass_utterances", "Finals transcribed again by the "
                                              "--final-model (two passes)", registry=r)
        self.second_pass_seconds = Histogram("asr_second_pass_seconds", "Wall time of one batch of second-pass "
                                             "finals", buckets=LATENCY_BUCKETS, registry=r)
        self.uploads = Counter("asr_uploads", "Files posted to /v1/audio/transcriptions, by HTTP status",
                               ["status"], registry=r)
        self.upload_audio_seconds = Counter("asr_upload_audio_seconds", "Seconds of uploaded audio decoded (behind "
                                            "the live streams)", registry=r)
        self.reply_seconds = Histogram("asr_reply_latency_seconds", "From a message's arrival to its reply sent",
                                       buckets=LATENCY_BUCKETS, registry=r)

    def observe_step(self, batch: int, seconds: float) -> None:
        if batch:
            self.batch_size.observe(batch)
            self.step_seconds.observe(seconds)

    def observe_second_pass(self, utterances: int, seconds: float) -> None:
        self.second_pass_utterances.inc(utterances)
        self.second_pass_seconds.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
