"""Two-pass finals: partials from the stream model, each utterance's final from the offline model, the same for a
file and for a stream in any chunking, in bounded memory, and never holding back other streams' partials."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from websockets.sync.client import connect

import asr
from asr.audio import SAMPLE_RATE, float_to_pcm16, load_audio
from asr.recognizer import Endpointing, StreamingRecognizer
from asr.second_pass import PendingFinal, SecondPass
from asr.transcribe import transcribe_audio
from server.app import ServerThread
from server.settings import ServerSettings


@pytest.fixture(scope="module")
def second_pass(offline_model):
    return SecondPass(offline_model, ServerSettings().decoding, "offline")


@pytest.fixture(scope="module")
def two_pass_server(stream_model, offline_model):
    with ServerThread(ServerSettings(port=0, final_model="offline"), stream_model, "stream") as running:
        yield running


def stream_finals(url: str, pcm: bytes, chunk_bytes: int) -> tuple[list[str], list[str]]:
    """(finals, partials) of one stream of `pcm` sent in chunks, then eof."""
    finals, partials = [], []
    with connect(url, max_size=None) as ws:
        for i in range(0, len(pcm), chunk_bytes):
            ws.send(pcm[i : i + chunk_bytes])
            reply = json.loads(ws.recv())
            if reply.get("text"):
                finals.append(reply["text"])
            elif reply.get("partial"):
                partials.append(reply["partial"])
        ws.send('{"eof": 1}')
        reply = json.loads(ws.recv())
        if reply.get("text"):
            finals.append(reply["text"])
    return finals, partials


def test_a_file_gets_the_offline_models_words_at_the_stream_models_endpoints(stream_model, second_pass, long_speech):
    audio = load_audio(long_speech)
    decoding = second_pass.decoding
    two = transcribe_audio(stream_model, audio, decoding=decoding, second_pass=second_pass)
    one = transcribe_audio(stream_model, audio, decoding=decoding)
    assert two.text and two.text != one.text, "the second pass changed the words"
    assert two.words == sorted(two.words, key=lambda w: w.start) and two.words[-1].end <= len(audio) / SAMPLE_RATE
    assert two.words[-1].start > 15, "word times count from the start of the file, not of the utterance"
    model = asr.load_model("stream", final_model="offline")
    assert model.transcribe(long_speech).text == two.text
    cli = subprocess.run([sys.executable, "-m", "asr", "transcribe", str(long_speech), "--final-model", "offline"],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and cli.stdout.strip() == two.text


def test_streamed_finals_equal_the_files_for_any_chunking(two_pass_server, stream_model, second_pass, long_speech):
    audio = load_audio(long_speech)
    expected = transcribe_audio(stream_model, audio, decoding=second_pass.decoding, second_pass=second_pass).text
    pcm = float_to_pcm16(audio)
    for chunk_ms in (100, 730):
        finals, partials = stream_finals(two_pass_server.url, pcm, int(SAMPLE_RATE * chunk_ms / 1000) * 2)
        assert " ".join(finals) == expected, chunk_ms
        assert len(finals) >= 3 and partials, "finals at each endpoint, partials between them"
    metrics = two_pass_server.server.metrics
    assert metrics.second_pass_utterances._value.get() >= 6


def test_a_second_pass_final_is_a_stream_final_with_the_utterance_frames(stream_model, second_pass, long_speech):
    audio = load_audio(long_speech)
    recognizer = StreamingRecognizer(stream_model, decoding=second_pass.decoding, second_pass=second_pass,
                                     endpointing=Endpointing(max_utterance=4.0))
    from asr.recognizer import decode_streams

    pending, most_kept = [], 0
    for start in range(0, len(audio), SAMPLE_RATE // 2):
        recognizer.accept_audio(audio[start : start + SAMPLE_RATE // 2], last=start + SAMPLE_RATE // 2 >= len(audio))
        pending += decode_streams(stream_model, [recognizer])[0]
        most_kept = max(most_kept, sum(len(f) for f in recognizer._kept))
    assert all(isinstance(p, PendingFinal) for p in pending) and len(pending) >= 5
    # memory: the kept frames never exceed one utterance (max_utterance) and the half second not yet searched
    assert most_kept <= (4.0 + 0.5 + 0.1) * 100, most_kept
    assert [p.offset for p in pending] == sorted(p.offset for p in pending)
    assert sum(len(p.features) for p in pending) <= len(audio) // 160 + 1
    finals = second_pass.finals(pending)
    alone = [second_pass.finals([p])[0] for p in pending]
    assert [f.text for f in finals] == [a.text for a in alone], "a batch gives each utterance what it gives alone"


def test_a_long_second_pass_never_holds_back_other_streams_partials(stream_model, offline_model, long_speech):
    """Stream A's final waits in a second pass held until B has had its replies: B's partials still come."""
    release, started = threading.Event(), threading.Event()

    class HeldSecondPass(SecondPass):  # the real second pass, held until the test lets it go
        def finals(self, pending):
            started.set()
            assert release.wait(60)
            return super().finals(pending)

    settings = ServerSettings(port=0)
    with ServerThread(settings, stream_model, "stream") as running:
        held = HeldSecondPass(offline_model, settings.decoding, "offline")
        running.server.second_pass = running.server.batcher.final_model = held
        pcm = float_to_pcm16(load_audio(long_speech))
        chunk = SAMPLE_RATE // 5 * 2
        with connect(running.url) as a, connect(running.url) as b:
            a.send(pcm[: 10 * chunk])
            a.recv()
            a.send('{"reset": 1}')  # A's utterance ends: its second pass starts and is held
            assert started.wait(60)
            replies = []
            for i in range(10):
                b.send(pcm[i * chunk : (i + 1) * chunk])
                replies.append(json.loads(b.recv()))
            assert len(replies) == 10 and any(r.get("partial") for r in replies)
            release.set()
            final = json.loads(a.recv())
            assert final.get("text"), final


def test_phrase_lists_and_alternatives_hold_in_the_second_pass(stream_model, second_pass, speech_dir):
    from tests.helpers import SENTENCES

    audio = load_audio(speech_dir / "weather.wav")
    phrases = [SENTENCES["weather"], SENTENCES["hello"], "yes", "no"]
    recognizer = StreamingRecognizer(stream_model, decoding=second_pass.decoding, phrases=phrases,
                                     max_alternatives=3, second_pass=second_pass)
    finals = recognizer.accept_waveform(audio, last=True)
    texts = [f.text for f in finals if f.text]
    assert texts and all(t in {p.upper() for p in phrases} for t in texts), texts
    final = next(f for f in finals if f.text)
    assert not isinstance(final, PendingFinal) and 1 <= len(final.alternatives) <= 3
    assert final.alternatives[0].text == final.text

    def of_phrases(words: list[str]) -> bool:  # a sequence of whole phrases of the list (or nothing)
        return not words or any(words[: len(p.split())] == p.upper().split() and of_phrases(words[len(p.split()):])
                                for p in phrases)

    assert all(of_phrases(a.text.split()) for a in final.alternatives), [a.text for a in final.alternatives]
