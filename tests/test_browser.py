"""The browser page in real headless Chromium, with a WAV file of speech as its microphone: the AudioWorklet
resamples to 16 kHz PCM16, the page streams it over the websocket and shows partials and finals in #transcript."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate

from asr.audio import SAMPLE_RATE, load_audio, resample
from server.app import ServerSettings, ServerThread
from server.session import Session
from tests.helpers import stream_transcript

CHROMIUM = "/usr/bin/chromium"

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no `playwright install`)")
if not shutil.which(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium", allow_module_level=True)


def speech_block_matches(heard: np.ndarray, speech: np.ndarray, block: int) -> list[tuple[float, float]]:
    """(correlation, level ratio) of each voiced `block`-sample piece of `speech` (samples,) at its best-correlated
    place in `heard` (samples,) (normalised cross-correlation, so a loud place does not outbid the right one)."""
    matches = []
    loudest = max(np.std(speech[i : i + block]) for i in range(0, len(speech) - block + 1, block))
    energy = np.concatenate([[0.0], np.cumsum(heard.astype(np.float64) ** 2)])
    norms = np.sqrt(np.maximum(energy[block:] - energy[:-block], 1e-12))  # of each block-long window of heard
    for i in range(0, len(speech) - block + 1, block):
        piece = speech[i : i + block]
        if np.std(piece) < 0.1 * loudest:
            continue  # silence and breath match anything
        lag = int(np.argmax(correlate(heard, piece, mode="valid", method="fft") / norms))
        found = heard[lag : lag + block]
        matches.append((float(np.corrcoef(found, piece)[0, 1]), float(np.std(found) / np.std(piece))))
    return matches


@pytest.fixture(scope="module")
def microphone_wav(speech_wav, tmp_path_factory):
    """The speech, then a second of silence (an endpoint), as a 48 kHz 16-bit WAV: Chromium loops it as the mic."""
    audio = np.concatenate([load_audio(speech_wav), np.zeros(SAMPLE_RATE, np.float32)])
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(path, resample(audio, SAMPLE_RATE, 48000), 48000, subtype="PCM_16")
    return path


def test_page_transcribes_the_microphone(stream_model, microphone_wav, speech_wav, monkeypatch):
    received = []  # the PCM the page sent, to check the worklet's resampling against the speech itself
    original = Session.pcm_to_samples

    def recording(session, data):
        received.append(bytes(data))
        return original(session, data)

    monkeypatch.setattr(Session, "pcm_to_samples", recording)
    with ServerThread(ServerSettings(port=0), stream_model, "stream") as server, playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone_wav}"])
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"http://127.0.0.1:{server.port}/?autostart=1")
            # The worklet sends 100 ms chunks: 100 replies are 10 s of microphone, the speech's loop at least twice
            # (the comparison below needs more than one loop when the fake microphone drops a buffer in one).
            page.wait_for_function("Number(document.querySelector('#transcript').dataset.replies) >= 100",
                                   timeout=60_000)
            # the loop's trailing second of silence is an endpoint: a final appears by itself
            page.wait_for_function("document.querySelector('#transcript .final') !== null", timeout=60_000)
            page.click("#toggle")  # Stop: eof, the last final, the server closes the stream
            page.wait_for_function("document.querySelector('#status').textContent.startsWith('closed (1000')",
                                   timeout=60_000)
            text = page.inner_text("#transcript")
            assert page.inner_text("#error") == "" and not errors
        finally:
            browser.close()
    assert text.strip(), "no final text reached the page"
    # The worklet's 16 kHz PCM16 is the speech: find it in what arrived and compare the waveforms. Chromium's fake
    # microphone replays the file in a loop and, on a loaded machine, drops or repeats capture buffers (seen in CI:
    # loops that correlated 0.66, and 0.08 and 0.31 as wholes). That is the capture, not the page, so the speech is
    # compared in 0.125 s blocks, each at its best place in all that arrived: a glitch spoils the blocks it falls in; a
    # wrong resampler (rate, filter) or sample format spoils every block.
    pcm = np.frombuffer(b"".join(received), "<i2").astype(np.float32) / 32768
    speech = load_audio(speech_wav)
    assert len(pcm) >= 2 * (len(speech) + SAMPLE_RATE), "less than two loops of the microphone arrived"
    matches = speech_block_matches(pcm, speech, SAMPLE_RATE // 8)
    correlations = np.array([c for c, _ in matches])
    levels = np.array([level for _, level in matches])
    assert np.mean(correlations > 0.9) >= 0.8, matches
    assert 0.8 < np.median(levels) < 1.25, matches
    # The page shows exactly what the recognizer makes of the audio the page sent (its finals, in order).
    assert text.split() == stream_transcript(stream_model, b"".join(received)).split(), text
