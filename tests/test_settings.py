"""Every server setting has one home: flags and environment variables are read in server/settings.py into one
ServerSettings that nests the recognizer's Endpointing and the StreamLimits; defaults are written once."""
from __future__ import annotations

import argparse

import pytest

from asr.recognizer import Endpointing
from server.session import Session
from server.settings import DEFAULT_MAX_STREAMS, ServerSettings, StreamLimits, add_arguments, from_args
from tests.helpers import new_recognizer


def parse(argv: list[str]) -> ServerSettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(argv))


def test_defaults_are_the_dataclasses(monkeypatch):
    for name in ("ASR_PORT", "ASR_IDLE_TIMEOUT", "ASR_ENDPOINT_SILENCE", "ASR_MAX_STREAMS", "ASR_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings = parse([])
    assert settings == ServerSettings()
    assert settings.endpointing == Endpointing() and settings.limits == StreamLimits()
    assert settings.max_streams == DEFAULT_MAX_STREAMS < 100  # below the measured capacity (README, Benchmarks)


def test_flags_and_environment_fill_the_nested_settings(monkeypatch):
    monkeypatch.setenv("ASR_IDLE_TIMEOUT", "5")
    monkeypatch.setenv("ASR_MAX_STREAMS", "10")
    settings = parse(["--endpoint-silence", "0.5", "--max-streams", "12", "--max-streams-per-address", "3",
                      "--min-realtime", "0.25", "--token", "s3cret"])
    assert settings.limits.idle_timeout == 5.0  # from the environment
    assert settings.max_streams == 12  # the flag wins over ASR_MAX_STREAMS
    assert settings.endpointing == Endpointing(silence=0.5)
    assert settings.limits.min_realtime == 0.25 and settings.max_streams_per_address == 3
    assert settings.token == "s3cret"


@pytest.mark.parametrize("argv, says", [
    (["--tls-cert", "cert.pem"], "go together"),
    (["--min-realtime", "2"], "min_realtime"),
    (["--blank-threshold", "1.5"], "blank_threshold"),
])
def test_settings_that_cannot_work_say_why(argv, says):
    with pytest.raises(ValueError, match=says):
        parse(argv)


def test_session_deadline_for_the_next_message(stream_model):
    limits = StreamLimits(idle_timeout=60, max_stream_seconds=100, min_realtime=0.5, realtime_grace=10)
    session = Session(new_recognizer(stream_model), "stream", limits=limits)
    now = session.opened
    assert session.next_message_deadline(now) == (20.0, "realtime")  # (0 s of audio + 10 s grace) / 0.5
    session.audio_seconds, session.waited = 40.0, 30.0  # a client ahead of real time
    assert session.next_message_deadline(now + 30) == (60.0, "idle")
    assert session.next_message_deadline(now + 90) == (10.0, "duration")
    session.audio_seconds = 0.001  # a client that sent 2 bytes now and then
    seconds, which = session.next_message_deadline(now + 30)
    assert which == "realtime" and seconds == 0.0
    assert "0.5x real time" in session.timed_out(which, now + 30).message
