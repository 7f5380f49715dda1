"""Word language models (asr.lm, `asr lm`) and CTC beam search over words (asr.lm_decoding), on real audio."""
from __future__ import annotations

import json
import random
import re
import shutil

import jiwer
import pytest
import torch

from websockets.sync.client import connect

from asr.audio import float_to_pcm16, load_audio
from asr.cli import main
from asr.decoding import Transcript, ctc_greedy
from asr.features import log_mel
from asr.lm import SentenceFilter, build_language_model, load_language_model
from asr.lm_decoding import (GREEDY, MAX_PHRASE_CHARS, MAX_PHRASE_WORDS, MAX_PHRASES, BeamSearchDecoder,
                             BeamSearchOptions, Decoding)
from asr.recognizer import StreamingRecognizer
from asr.transcribe import transcribe_audio
from asr.tokenizer import VOCAB
from tests.helpers import SENTENCES, espeak

TEXT = """Hello world, this is a test.
The weather is nice today and the sun is shining.
She sells sea shells by the sea shore.
The world is a nice place to live.
This is the house that Jack built.
A secret sentence that the model must never see.
"""
EXCLUDED = "a secret sentence that the model must never see\n"


def needs_kenlm():
    if shutil.which("lmplz") is None or shutil.which("build_binary") is None:
        pytest.fail("KenLM's lmplz/build_binary are missing: run `bash install.sh` (it builds them)")


@pytest.fixture(scope="module")
def small_lm(tmp_path_factory):
    needs_kenlm()
    folder = tmp_path_factory.mktemp("lm")
    (folder / "text.txt").write_text(TEXT * 3, encoding="utf-8")
    (folder / "excluded.txt").write_text(EXCLUDED, encoding="utf-8")
    build_language_model([folder / "text.txt"], folder / "small", order=3, exclude_files=[folder / "excluded.txt"])
    return load_language_model(folder / "small")


def spell(text: str, frames_per_symbol: int = 2) -> torch.Tensor:
    """Peaked CTC log-probs that spell `text` (blank between symbols), like a confident acoustic model's.
    "{YL}" is a symbol the model is unsure of: Y most likely, L second."""
    symbols = re.findall(r"\{..\}|.", text)
    probs = torch.full((len(symbols) * (frames_per_symbol + 1) + 2, len(VOCAB)), 0.002)
    probs[0, 0] = probs[-1, 0] = 1.0
    t = 1
    for symbol in symbols:
        for _ in range(frames_per_symbol):
            if len(symbol) == 4:
                probs[t, VOCAB.index(symbol[1])], probs[t, VOCAB.index(symbol[2])] = 0.6, 0.4
            else:
                probs[t, VOCAB.index(symbol)] = 1.0
            t += 1
        probs[t, 0] = 1.0
        t += 1
    return (probs / probs.sum(-1, keepdim=True)).log()


@pytest.fixture(scope="module")
def speech_log_probs(speech_dir, stream_model):
    """name -> (reference, log_probs) of the shipped stream model on espeak-ng speech."""
    out = {}
    extra = {"school": "we will meet at the house after the school day"}
    for name, text in {**SENTENCES, **extra}.items():
        path = speech_dir / f"{name}.wav"
        if not path.exists():
            espeak(text, path)
        features = log_mel(load_audio(path))
        with torch.inference_mode():
            log_probs, lengths, _ = stream_model(features[None], torch.tensor([len(features)]))
        out[name] = (text.upper(), log_probs[0, : lengths[0]])
    return out


# --- building ----------------------------------------------------------------------------------------------------------
def test_build_writes_lm_directory_without_excluded_sentences(small_lm):
    meta = small_lm.metadata
    assert (small_lm.directory / "lm.bin").stat().st_size > 0
    assert meta["order"] == 3 and meta["excluded"]["lines_dropped"] == 3  # the secret line, three times
    assert "SECRET" not in small_lm.words and "NEVER" not in small_lm.words
    assert {"HELLO", "WORLD", "SHELLS", "JACK"} <= set(small_lm.words)
    assert meta["vocabulary"] == len(small_lm.words)


def test_sentence_filter_drops_lines_containing_excluded_sentences():
    is_excluded = SentenceFilter(["THE CAT SAT DOWN", "YES"])
    assert is_excluded("THE CAT SAT DOWN")
    assert is_excluded("AND THEN THE CAT SAT DOWN ON THE MAT")
    assert not is_excluded("THE CAT SAT")  # a part of an excluded sentence is fine
    assert is_excluded("YES") and not is_excluded("YES PLEASE")  # short ones only as whole lines


def test_oov_rate_counts_words_outside_the_lexicon(small_lm, tmp_path):
    (tmp_path / "dev.txt").write_text("hello world\nhello zebra crossing\n", encoding="utf-8")
    assert small_lm.oov_rate([tmp_path / "dev.txt"]) == (2, 5)


def test_cli_builds_and_reports_oov(tmp_path, capsys):
    needs_kenlm()
    (tmp_path / "a.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "dev.txt").write_text("hello unknownword\n", encoding="utf-8")
    assert main(["lm", "build", str(tmp_path / "a.txt"), "--out", str(tmp_path / "lm"), "--order", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["order"] == 2
    assert main(["lm", "info", str(tmp_path / "lm"), "--oov", str(tmp_path / "dev.txt")]) == 0
    assert json.loads(capsys.readouterr().out)["oov"][str(tmp_path / "dev.txt")]["oov_words"] == 1
    assert main(["lm", "info", str(tmp_path / "nowhere")]) == 2


def test_shipped_lm_is_large_and_small_enough():
    lm = load_language_model("default")
    assert len(lm.words) >= 100_000
    assert lm.binary.stat().st_size <= 30 * 2**20
    assert lm.metadata["excluded"]["sentences"] > 0


# --- decoding ------------------------------------------------------------------------------------------------------------
def test_lexicon_decoder_emits_only_lexicon_words(small_lm):
    decoder = BeamSearchDecoder(0.03, small_lm)
    log_probs = spell("HE{YL}LO WORLD THIS IS A TE{ZS}T")
    assert ctc_greedy(log_probs, 0.03).text == "HEYLO WORLD THIS IS A TEZT"
    decoder.feed(log_probs)  # the lexicon's words come out, not the misspellings
    assert decoder.result().text == "HELLO WORLD THIS IS A TEST"
    decoder.clear()
    decoder.feed(spell("HELLO ZEBRA WORLD"))  # ZEBRA is outside the lexicon: it cannot be emitted
    assert set(decoder.result().text.split()) <= set(small_lm.words)


def test_lexicon_only_decoding(small_lm):
    decoder = BeamSearchDecoder(0.03, small_lm, BeamSearchOptions(lm_weight=0))
    decoder.feed(spell("SHE SE{IL}LS SEA SHELLS"))
    assert decoder.result().text == "SHE SELLS SEA SHELLS"


def test_words_carry_absolute_times_and_confidences(small_lm):
    decoder = BeamSearchDecoder(0.1, small_lm)
    decoder.feed(spell("A TEST"))
    decoder.clear()
    silence = spell("")
    decoder.feed(silence)
    decoder.feed(spell("HELLO WORLD"))
    hello, world = decoder.result().words
    offset = len(spell("A TEST")) + len(silence)
    assert hello.word == "HELLO" and hello.start >= offset * 0.1 and hello.end <= world.start
    assert 0.5 < hello.conf <= 1.0 and 0.5 < world.conf <= 1.0


def test_whole_and_chunked_decoding_are_identical(speech_log_probs):
    log_probs = torch.cat([lp for _, lp in speech_log_probs.values()] * 3)  # ~40 s, several prunes
    for options in (BeamSearchOptions(), BeamSearchOptions(prune_every=7, look_back=3, blank_skip=None)):
        whole = BeamSearchDecoder(0.03, "default", options)
        whole.feed(log_probs)
        expected, expected_nbest = whole.result(), whole.nbest(3)
        rng = random.Random(0)
        for _ in range(2):
            chunked = BeamSearchDecoder(0.03, "default", options)
            start = 0
            while start < len(log_probs):
                size = rng.randint(1, 40)
                chunked.feed(log_probs[start : start + size])
                start += size
                chunked.text  # partials in between change nothing
            assert chunked.result() == expected
            assert chunked.nbest(3) == expected_nbest


def test_blank_skip_cuts_runs_of_sure_blanks_from_the_search(speech_log_probs):
    _, log_probs = speech_log_probs["weather"]
    sure = log_probs[:, 0].exp() >= 0.98  # blank posterior at least blank_skip
    cut = int((sure[1:] & sure[:-1]).sum())  # every frame of a run but its first
    assert cut > 0
    for options, searched in ((BeamSearchOptions(), len(log_probs) - cut),
                              (BeamSearchOptions(blank_skip=None), len(log_probs))):
        decoder = BeamSearchDecoder(0.03, "default", options)
        for start in range(0, len(log_probs), 7):  # a run split across chunks is still one run
            decoder.feed(log_probs[start : start + 7])
        assert (decoder.frames, decoder.searched) == (len(log_probs), searched)


def test_memory_stays_bounded_on_a_long_stream(speech_log_probs):
    options = BeamSearchOptions()
    decoder = BeamSearchDecoder(0.03, "default", options)
    _, log_probs = speech_log_probs["weather"]
    for _ in range(30):
        decoder.feed(log_probs)
        assert decoder.buffered_frames <= options.prune_every + options.look_back + 100
    assert len(decoder.result().words) > 100


def test_lm_decoding_gets_at_least_as_many_words_right_as_greedy(speech_log_probs):
    decoder = BeamSearchDecoder(0.03)
    greedy_hits = lm_hits = 0
    for reference, log_probs in speech_log_probs.values():
        decoder.feed(log_probs)
        text = decoder.result().text
        decoder.clear()
        greedy = ctc_greedy(log_probs, 0.03).text
        greedy_hits += jiwer.process_words(reference, greedy or "-").hits
        lm_hits += jiwer.process_words(reference, text or "-").hits
    assert lm_hits >= greedy_hits


def test_partial_text_grows_with_the_audio(speech_log_probs):
    reference, log_probs = speech_log_probs["hello"]
    decoder = BeamSearchDecoder(0.03)
    partials = []
    for start in range(0, len(log_probs), 10):
        decoder.feed(log_probs[start : start + 10])
        partials.append(decoder.text)
    final = decoder.result().text
    # the first 0.3 s holds at most the beam's guess at a first word; the words come with the audio
    assert len(partials[0].split()) <= 1 < 4 <= len(partials[-1].split()) and len(final.split()) >= 4
    counts = [len(p.split()) for p in partials]
    assert sum(b < a for a, b in zip(counts, counts[1:])) <= 1, partials  # a word may be revised away, once
    # A partial is the search's best path so far; closing the search (the LM's end of sentence, paths with the same
    # words merged) may still revise a word of it, as Vosk's partials may be revised: at most one here.
    said_so_far = final.split()[: len(partials[-1].split())]
    revised = jiwer.process_words(" ".join(said_so_far), partials[-1])
    assert revised.substitutions + revised.deletions + revised.insertions <= 1, (partials, final)


def test_nbest_is_ordered_and_distinct(speech_log_probs):
    _, log_probs = speech_log_probs["numbers"]
    decoder = BeamSearchDecoder(0.03)
    decoder.feed(log_probs)
    alternatives = decoder.nbest(5)
    assert 1 < len(alternatives) <= 5
    assert alternatives[0].text == decoder.result().text
    confidences = [a.confidence for a in alternatives]
    assert confidences == sorted(confidences, reverse=True) and 0 < sum(confidences) <= 1 + 1e-6
    assert len({a.text for a in alternatives}) == len(alternatives)
    assert set(alternatives[0].to_dict()) == {"confidence", "text", "words"}


# --- phrase lists ------------------------------------------------------------------------------------------------------
PHRASES = ["hello world this is a test", "the weather is nice today", "yes", "no", "she sells sea shells"]


def test_phrase_list_restricts_output_to_whole_phrases(speech_log_probs):
    decoder = BeamSearchDecoder(0.03, phrases=PHRASES)
    allowed = {p.upper() for p in PHRASES}
    for name, (_, log_probs) in speech_log_probs.items():
        decoder.feed(log_probs)
        text = decoder.result().text
        decoder.clear()
        rest = text
        while rest:  # a sequence of whole phrases
            match = next((p for p in sorted(allowed, key=len, reverse=True) if (rest + " ").startswith(p + " ")), None)
            assert match, f"{name}: {text!r} is not made of phrases"
            rest = rest[len(match) :].strip()
        if name == "hello":
            assert text == "HELLO WORLD THIS IS A TEST"


def test_phrase_list_limits():
    with pytest.raises(ValueError, match="phrases is over the limit"):
        BeamSearchDecoder(0.03, phrases=["yes"] * (MAX_PHRASES + 1))
    with pytest.raises(ValueError, match="words, over"):
        BeamSearchDecoder(0.03, phrases=[" ".join(["go"] * (MAX_PHRASE_WORDS + 1))])
    with pytest.raises(ValueError, match="characters, over"):
        BeamSearchDecoder(0.03, phrases=["a" * (MAX_PHRASE_CHARS + 1)])
    with pytest.raises(ValueError, match="no words"):
        BeamSearchDecoder(0.03, phrases=["123", "!"])
    with pytest.raises(ValueError, match="not one string"):
        BeamSearchDecoder(0.03, phrases="yes no")


# --- the recognizer, `asr transcribe` and the server, decoding with the LM ------------------------------------------
def test_streamed_lm_finals_equal_offline_transcription_for_any_chunking(stream_model, long_speech):
    audio = load_audio(long_speech)
    expected = transcribe_audio(stream_model, audio, decoding=Decoding())
    assert len(expected.text.split()) >= 20
    assert expected.text != transcribe_audio(stream_model, audio, decoding=GREEDY).text  # the LM changes words
    rng = random.Random(3)
    for _ in range(2):
        recognizer = StreamingRecognizer(stream_model, decoding=Decoding())
        finals, start = [], 0
        while start < len(audio):
            size = rng.randint(100, 12000)
            finals += recognizer.accept_waveform(audio[start : start + size])
            recognizer.partial  # partials in between change nothing
            start += size
        finals += recognizer.finish()
        assert len(finals) >= 3  # endpoints between the sentences
        assert Transcript.join(finals).text == expected.text


def test_recognizer_gives_nbest_lists_with_its_finals(stream_model, speech_wav):
    recognizer = StreamingRecognizer(stream_model, decoding=Decoding(), max_alternatives=3)
    [final] = recognizer.accept_waveform(load_audio(speech_wav), last=True)
    assert 1 < len(final.alternatives) <= 3 and final.alternatives[0].text == final.text
    assert [a.confidence for a in final.alternatives] == sorted((a.confidence for a in final.alternatives),
                                                                reverse=True)


def test_cli_transcribes_with_and_without_the_lm(speech_wav, capsys):
    assert main(["transcribe", str(speech_wav), "-q"]) == 0
    with_lm = capsys.readouterr().out.strip()
    assert main(["transcribe", str(speech_wav), "-q", "--lm", "none"]) == 0
    greedy = capsys.readouterr().out.strip()
    reference = SENTENCES["hello"].upper()
    assert jiwer.wer(reference, with_lm) <= jiwer.wer(reference, greedy)
    assert set(with_lm.split()) <= set(load_language_model("default").words)
    assert main(["transcribe", str(speech_wav), "-q", "--lm", "/nowhere/lm"]) == 2
    error = capsys.readouterr().err
    assert "/nowhere/lm" in error and "Traceback" not in error


def test_server_phrase_list_and_alternatives(server, speech_dir):
    """A real server decodes with the shipped LM by default; a phrase_list restricts a stream to its phrases,
    max_alternatives gives n-best lists (a phrase list over the limits: tests/test_server_protocol.py)."""
    pcm = float_to_pcm16(load_audio(speech_dir / "hello.wav"))

    def final(config: dict) -> dict:
        with connect(server.url) as ws:
            ws.send(json.dumps({"config": config}))
            for start in range(0, len(pcm), 8000):
                ws.send(pcm[start : start + 8000])
                ws.recv()
            ws.send('{"eof": 1}')
            return json.loads(ws.recv())

    assert final({"phrase_list": PHRASES})["text"] == "HELLO WORLD THIS IS A TEST"
    assert re.fullmatch(r"((YES|NO|CALL MOM)( |$))*", final({"phrase_list": ["yes", "no", "call mom"]})["text"])
    nbest = final({"max_alternatives": 4})["alternatives"]
    assert 1 < len(nbest) <= 4 and all(set(a) == {"text", "confidence", "result"} for a in nbest)
    assert [a["confidence"] for a in nbest] == sorted((a["confidence"] for a in nbest), reverse=True)
