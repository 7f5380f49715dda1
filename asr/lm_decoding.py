"""CTC beam search over words: a lexicon, a KenLM word n-gram LM or a phrase list (flashlight-text's decoder).

`BeamSearchDecoder` has the interface of `asr.decoding.GreedyCTCDecoder` (feed chunks of frames in any chunking,
`.text` for partials, `result()`, `clear()`), plus `nbest(n)`:

    lm = load_language_model("default")
    decoder = BeamSearchDecoder(frame_shift, lm, BeamSearchOptions(beam_size=16, lm_weight=0.8))
    decoder.feed(log_probs)            # (frames, vocab), any number of times
    decoder.text                       # best hypothesis so far (complete words only), for partial results
    decoder.result()                   # Transcript with timed words; ends the utterance's search
    decoder.nbest(3)                   # [Alternative(text, words, confidence), ...], best first
    decoder.clear()                    # next utterance; frames keep counting from the start of the stream

    BeamSearchDecoder(frame_shift, phrases=["yes", "no", "call mom"])  # output is a sequence of these phrases

How the search works:
- The lexicon is a trie over each word's letters followed by a space (the word boundary), so a word is emitted
  when the space after it is; a synthetic space frame closes the last word at the end of an utterance.
- A word outside the lexicon cannot be emitted: the search picks the closest in-lexicon words instead (the LM
  directory's lm.json and `LanguageModel.oov_rate` say how often that happens).
- Runs of frames whose blank posterior is at least `blank_skip` are cut to their first frame before the search
  (CTC outputs are mostly blank, this is where most of the speed comes from); word times stay absolute.
- Memory per stream is bounded: at most `beam_size` hypotheses per frame, and every `prune_every` searched frames
  the best path up to `look_back` frames ago is committed and its history dropped (flashlight's `prune`).
  Commits happen at fixed frame counts, so any chunking of the same frames gives the same result.
- The search structures (trie, LM) are built once per LM or phrase list and shared by every stream.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from flashlight.lib.text.decoder import (LM, CriterionType, LexiconDecoder, LexiconDecoderOptions, LMState,
                                        SmearingMode, Trie, ZeroLM)
from flashlight.lib.text.dictionary import Dictionary

from asr.decoding import SPACE, Alternative, GreedyCTCDecoder, Transcript, Word
from asr.lm import LanguageModel, load_language_model
from asr.tokenizer import BLANK, VOCAB, normalize_text

UNK = "<unk>"
MAX_PHRASES = 1000
MAX_PHRASE_WORDS = 20
MAX_PHRASE_CHARS = 200
_CLOSED = -1.0e4  # log-score of what a synthetic frame rules out


@dataclass(frozen=True)
class BeamSearchOptions:
    """Search settings. lm_weight 0 searches the lexicon alone (no LM scores, faster). The defaults were chosen on
    the real dev suite (`python -m training.tune_decoding`; beam_threshold 10 and blank_skip 0.98 gave the dev WER of
    20 and 0.999, 66.2% vs 66.3%, in two thirds of the search time; beam_size 64 gave mean dev WERs of 50.1% and
    45.0% for the phase-10 `stream` and `offline` models against 51.3% and 46.1% with 16, and 128 50.0% and 44.7%
    in twice the search time)."""

    beam_size: int = 64  # hypotheses kept per frame
    beam_size_token: int = 8  # most likely symbols tried per frame
    beam_threshold: float = 10.0  # drop hypotheses this far (log) below the best
    lm_weight: float = 1.5  # weight of the LM's log10 word probabilities (tuned on the real dev suite: model card)
    word_score: float = 0.0  # bonus per word (insertion bonus)
    sil_score: float = 0.0  # bonus per word boundary frame
    blank_skip: float | None = 0.98  # cut runs of frames at least this sure of blank; None keeps every frame
    look_back: int = 30  # searched frames kept uncommitted at a prune
    prune_every: int = 60  # searched frames between prunes

    def __post_init__(self):
        if self.beam_size < 1 or self.beam_size_token < 1:
            raise ValueError("beam_size and beam_size_token must be at least 1")
        if self.prune_every < 1 or self.look_back < 0:
            raise ValueError("prune_every must be positive and look_back non-negative")
        if self.blank_skip is not None and not 0.0 < self.blank_skip <= 1.0:
            raise ValueError(f"blank_skip {self.blank_skip} is outside (0, 1]")


# A phrase list's search graph is tiny: a wider beam keeps whole-phrase paths alive until the end, cheaply.
PHRASE_OPTIONS = BeamSearchOptions(beam_size=64, beam_threshold=50.0)


# --- search graphs: a trie over words and the LM scoring them, shared between streams ---------------------------------
class _SearchGraph:
    """The lexicon trie (each word's letters and a space) and the LM over the same word indices."""

    def __init__(self, words: Sequence[str], make_lm, score_words: bool):
        self.grammar: _PhraseLM | None = None
        self.words = list(words) + [UNK]
        self.unk = len(self.words) - 1
        self.dictionary = Dictionary()
        for word in self.words:
            self.dictionary.add_entry(word)
        self.dictionary.set_default_index(self.unk)
        self.lm = make_lm(self.dictionary)
        self.trie = Trie(len(VOCAB), SPACE)
        start = self.lm.start(False)
        index = {ch: i for i, ch in enumerate(VOCAB)}
        for i, word in enumerate(words):
            score = self.lm.score(start, i)[1] if score_words else 0.0
            self.trie.insert([index[ch] for ch in word] + [SPACE], i, score)
        self.trie.smear(SmearingMode.MAX)


@lru_cache(maxsize=8)
def _lexicon_graph(directory: str, use_lm: bool) -> _SearchGraph:
    lm = load_language_model(directory)
    if not use_lm:
        return _SearchGraph(lm.words, lambda dictionary: ZeroLM(), score_words=False)
    if lm.binary is None:
        raise ValueError(f"{lm.directory} has no lm.bin: pass lm_weight=0 to decode with its lexicon alone")
    from flashlight.lib.text.decoder.kenlm import KenLM

    return _SearchGraph(lm.words, lambda dictionary: KenLM(str(lm.binary), dictionary), score_words=True)


class _PhraseLM(LM):
    """A grammar as an LM: a word is allowed only where it continues a phrase (or, at a phrase's end, starts
    another); an utterance may end only at a phrase's end."""

    def __init__(self, phrases: list[list[int]]):
        LM.__init__(self)
        self.children: list[dict[int, int]] = [{}]  # node -> {word: node}; node 0 is the start
        self.ends: set[int] = set()
        for phrase in phrases:
            node = 0
            for word in phrase:
                node = self.children[node].setdefault(word, len(self.children))
                if node == len(self.children):
                    self.children.append({})
            self.ends.add(node)
        self.ends.add(0)  # no phrase at all (silence, or speech that is none of them)
        self.states = [LMState() for _ in self.children]
        self.node_of = {id(s): n for n, s in enumerate(self.states)}

    def start(self, start_with_nothing):
        return self.states[0]

    def score(self, state, word):
        node = self.node_of[id(state)]
        following = self.children[node].get(word)
        if following is None and node in self.ends:
            following = self.children[0].get(word)
        if following is None:
            return self.states[0], _CLOSED
        return self.states[following], 0.0

    def finish(self, state):
        return state, 0.0 if self.node_of[id(state)] in self.ends else _CLOSED

    def whole_phrases(self, words: list[int]) -> int:
        """How many leading words of a sequence make a sequence of whole phrases (the longest such prefix)."""
        node, whole = 0, 0
        for i, word in enumerate(words):
            following = self.children[node].get(word)
            if following is None and node in self.ends:
                following = self.children[0].get(word)
            if following is None:
                break
            node = following
            if node in self.ends:
                whole = i + 1
        return whole


def check_phrases(phrases: Sequence[str]) -> tuple[str, ...]:
    """Normalised phrases, or a ValueError if the list is empty or over the limits."""
    if isinstance(phrases, str):
        raise ValueError("phrases must be a list of strings, not one string")
    if len(phrases) > MAX_PHRASES:
        raise ValueError(f"{len(phrases)} phrases is over the limit of {MAX_PHRASES}")
    out = []
    for phrase in phrases:
        if not isinstance(phrase, str):
            raise ValueError(f"phrase {phrase!r} is not a string")
        if len(phrase) > MAX_PHRASE_CHARS:
            raise ValueError(f"phrase {phrase[:30]!r}... has {len(phrase)} characters, over {MAX_PHRASE_CHARS}")
        words = normalize_text(phrase).split()
        if len(words) > MAX_PHRASE_WORDS:
            raise ValueError(f"phrase {phrase[:30]!r}... has {len(words)} words, over {MAX_PHRASE_WORDS}")
        if words:
            out.append(" ".join(words))
    if not out:
        raise ValueError("the phrase list has no words (phrases are normalised to A-Z and apostrophes)")
    return tuple(dict.fromkeys(out))


@lru_cache(maxsize=64)
def _phrase_graph(phrases: tuple[str, ...]) -> _SearchGraph:
    words = sorted({w for p in phrases for w in p.split()})
    index = {w: i for i, w in enumerate(words)}
    grammar = _PhraseLM([[index[w] for w in p.split()] for p in phrases])
    graph = _SearchGraph(words, lambda dictionary: grammar, score_words=False)
    graph.grammar = grammar
    return graph


# --- the per-stream decoder ------------------------------------------------------------------------------------------
class _WordAssembler:
    """Turns a CTC path (token and completed-word label per searched frame) into timed words."""

    def __init__(self, previous: int = BLANK, letters: list | None = None):
        self.previous = previous
        self.letters: list[tuple[int, int, float]] = letters or []  # (label, absolute frame, log-prob)

    def copy(self) -> "_WordAssembler":
        return _WordAssembler(self.previous, list(self.letters))

    def push(self, token: int, word: int, frame: int, log_probs: np.ndarray, graph: _SearchGraph,
             frame_shift: float, out: list[Word]) -> None:
        if token not in (BLANK, SPACE) and (token != self.previous):
            self.letters.append((token, frame, float(log_probs[token])))
        self.previous = token
        if word >= 0 and self.letters:
            text = graph.words[word] if word != graph.unk else "".join(VOCAB[t] for t, _, _ in self.letters)
            conf = math.exp(sum(lp for _, _, lp in self.letters) / len(self.letters))
            out.append(Word(text, self.letters[0][1] * frame_shift, (self.letters[-1][1] + 1) * frame_shift, conf))
            self.letters = []


class BeamSearchDecoder:
    """CTC beam search over words, fed frames in any chunking; see the module docstring.

    lm: a LanguageModel, "default" or an LM directory path (ignored when `phrases` is given).
    phrases: restrict the output to sequences of these phrases (limits: MAX_PHRASES phrases, MAX_PHRASE_WORDS
    words and MAX_PHRASE_CHARS characters each; ValueError beyond them).
    """

    def __init__(self, frame_shift: float, lm: LanguageModel | str | None = "default",
                 options: BeamSearchOptions | None = None, phrases: Sequence[str] | None = None):
        self.frame_shift = frame_shift
        self.options = options = options or (PHRASE_OPTIONS if phrases is not None else BeamSearchOptions())
        if phrases is not None:
            self.graph = _phrase_graph(check_phrases(phrases))
        else:
            if lm is None:
                raise ValueError("give an LM (a LanguageModel, 'default' or a directory) or a phrase list")
            directory = lm.directory if isinstance(lm, LanguageModel) else load_language_model(lm).directory
            self.graph = _lexicon_graph(str(directory), options.lm_weight != 0)
        flashlight_options = LexiconDecoderOptions(
            beam_size=options.beam_size, beam_size_token=options.beam_size_token,
            beam_threshold=options.beam_threshold, lm_weight=options.lm_weight, word_score=options.word_score,
            unk_score=float("-inf"), sil_score=options.sil_score, log_add=False, criterion_type=CriterionType.CTC)
        self._search = LexiconDecoder(flashlight_options, self.graph.trie, self.graph.lm, SPACE, BLANK,
                                      self.graph.unk, [], False)
        self._skip_log_prob = math.log(options.blank_skip) if options.blank_skip is not None else None
        self.frames = 0  # output frames seen so far (absolute)
        self.searched = 0  # of those, the frames the search saw (the rest were cut by blank_skip)
        self.clear()

    # --- the GreedyCTCDecoder interface -------------------------------------------------------------------------
    def feed(self, log_probs: torch.Tensor) -> None:
        """log_probs: (frames, vocab) for the next frames of the stream. After `result()`/`nbest()` without
        `clear()`, feeding starts the next utterance."""
        if self._ranked is not None:
            self.clear()
        scores = np.ascontiguousarray(torch.as_tensor(log_probs).detach().float().cpu().numpy())
        keep = self._searched_frames(scores[:, BLANK])
        frames = np.flatnonzero(keep) + self.frames
        self.frames += len(scores)
        scores = scores[keep]
        self.searched += len(scores)
        done = 0
        while done < len(scores):  # decode up to each prune point, so any chunking prunes at the same frames
            take = min(len(scores) - done, self.options.prune_every - self._since_prune)
            self._decode(scores[done : done + take], frames[done : done + take])
            done += take
            self._since_prune += take
            if self._since_prune == self.options.prune_every:
                self._commit()
                self._since_prune = 0

    @property
    def text(self) -> str:
        """Best hypothesis so far: the words completed up to the last searched frame."""
        if self._ranked is not None:
            return self._finish(1)[0].text
        # Text only, so no timing: the committed words and the word labels of the uncommitted part of the path
        # (the lexicon's words; <unk> is never emitted, its score is -inf).
        uncommitted = [self.graph.words[w] for w in self._search.get_best_hypothesis(0).words[1:] if w >= 0]
        return " ".join([w.word for w in self._words] + uncommitted)

    @property
    def buffered_frames(self) -> int:
        """Searched frames not yet committed: what a stream's memory grows with, bounded by the pruning."""
        return len(self._pending_frames)

    def result(self) -> Transcript:
        """The best hypothesis of the utterance as text and timed words (closes the search: see `feed`)."""
        best = self._finish(1)[0]
        return Transcript(best.text, best.words)

    def nbest(self, n: int) -> list[Alternative]:
        """Up to n distinct hypotheses of the utterance, best first (closes the search: see `feed`)."""
        return self._finish(n)

    def clear(self) -> None:
        """Forget the hypothesis (after an endpoint); the frame count goes on."""
        self._search.decode_begin()
        self._words: list[Word] = []  # committed words
        self._committed_labels: list[int] = []  # their word indices (phrase lists check them)
        self._assembler = _WordAssembler()
        self._pending_frames = np.zeros(0, dtype=np.int64)  # absolute frame of each searched, uncommitted frame
        self._pending_scores = np.zeros((0, len(VOCAB)), dtype=np.float32)
        self._since_prune = 0
        self._last_was_blank = False
        self._ranked: list | None = None  # (confidence, hypothesis, words kept) per distinct text, once ended
        self._final: list[Alternative] = []  # the first of those with their words assembled

    # --- internals ------------------------------------------------------------------------------------------------
    def _searched_frames(self, blank: np.ndarray) -> np.ndarray:
        """Mask of the frames to search: all but the second and later frames of runs of sure blanks."""
        if self._skip_log_prob is None or len(blank) == 0:
            return np.ones(len(blank), dtype=bool)
        sure = blank >= self._skip_log_prob
        previous = np.concatenate([[self._last_was_blank], sure[:-1]])
        self._last_was_blank = bool(sure[-1])
        return ~(sure & previous)

    def _decode(self, scores: np.ndarray, frames: np.ndarray) -> None:
        if len(scores):
            scores = np.ascontiguousarray(scores)
            self._search.decode_step(scores.ctypes.data, len(scores), scores.shape[1])
            self._pending_scores = np.concatenate([self._pending_scores, scores])
            self._pending_frames = np.concatenate([self._pending_frames, frames])

    def _commit(self) -> None:
        """Commit the best path up to `look_back` frames ago (back to a word end) and drop its history."""
        hypothesis = self._search.get_best_hypothesis(self.options.look_back)
        committed = len(hypothesis.tokens) - 1
        if committed <= 0:
            return
        self._assemble(hypothesis, self._assembler, self._words)
        if self.graph.grammar:
            self._committed_labels += [w for w in hypothesis.words[1:] if w >= 0]
        self._pending_scores = self._pending_scores[committed:]
        self._pending_frames = self._pending_frames[committed:]
        self._search.prune(self.options.look_back)

    def _assemble(self, hypothesis, assembler: _WordAssembler, out: list[Word]) -> None:
        """Words of a flashlight hypothesis over the pending frames (its element 0 is the last committed frame)."""
        closing = np.full(len(VOCAB), _CLOSED, dtype=np.float32)
        for i, (token, word) in enumerate(zip(hypothesis.tokens[1:], hypothesis.words[1:])):
            if i < len(self._pending_frames):
                frame, scores = int(self._pending_frames[i]), self._pending_scores[i]
            else:  # the synthetic closing frame and decode_end's step
                frame, scores = self.frames, closing
            assembler.push(token, word, frame, scores, self.graph, self.frame_shift, out)

    def _word_labels(self, hypothesis) -> list[int]:
        return self._committed_labels + [w for w in hypothesis.words[1:] if w >= 0]

    def _finish(self, n: int) -> list[Alternative]:
        """The utterance's n most probable distinct texts. Every final hypothesis is ranked by its text (the word
        labels, cheap); only the n returned get their timed words assembled (a Python walk over their frames)."""
        if self._ranked is None:
            closing = np.full((1, len(VOCAB)), _CLOSED, dtype=np.float32)
            closing[0, SPACE] = 0.0
            self._search.decode_step(closing.ctypes.data, 1, len(VOCAB))
            self._search.decode_end()
            committed = [w.word for w in self._words]
            scored: dict[str, list] = {}  # text -> [log-probability of its paths, its first path, words kept]
            for hypothesis in self._search.get_all_final_hypothesis():
                labels = [w for w in hypothesis.words[1:] if w >= 0]
                words = committed + [self.graph.words[w] for w in labels]
                if self.graph.grammar:  # whole phrases only: cut a path that ends inside one (the beam lost the rest)
                    words = words[: self.graph.grammar.whole_phrases(self._committed_labels + labels)]
                text = " ".join(words)
                if text in scored:  # the same words by another path: add up their probability
                    scored[text][0] = float(np.logaddexp(scored[text][0], hypothesis.score))
                else:
                    scored[text] = [hypothesis.score, hypothesis, len(words)]
            if not scored:
                scored[""] = [0.0, None, 0]
            top = max(score for score, _, _ in scored.values())
            total = sum(math.exp(score - top) for score, _, _ in scored.values())
            self._ranked = sorted(((math.exp(score - top) / total, hypothesis, kept)
                                   for score, hypothesis, kept in scored.values()), key=lambda r: -r[0])
            self._final = []
        while len(self._final) < min(n, len(self._ranked)):
            confidence, hypothesis, kept = self._ranked[len(self._final)]
            words = list(self._words)
            if hypothesis is not None:
                self._assemble(hypothesis, self._assembler.copy(), words)
            words = words[:kept]
            self._final.append(Alternative(" ".join(w.word for w in words), words, confidence=confidence))
        return self._final[:n]


# --- the choice of decoder, as the recognizer, `asr transcribe`, `asr eval` and the server take it -----------------
@dataclass(frozen=True)
class Decoding:
    """How CTC outputs become words: beam search over the lexicon and LM in directory `lm` ("default" is the
    shipped English LM), or greedy CTC when `lm` is None. A phrase list always gets beam search over the phrases."""

    lm: str | None = "default"
    options: BeamSearchOptions = BeamSearchOptions()

    def decoder(self, frame_shift: float, phrases: Sequence[str] | None = None):
        """A new decoder for one stream or file: GreedyCTCDecoder or BeamSearchDecoder (same interface)."""
        if phrases:
            return BeamSearchDecoder(frame_shift, phrases=phrases)
        if self.lm is None:
            return GreedyCTCDecoder(frame_shift)
        return BeamSearchDecoder(frame_shift, self.lm, self.options)

    def describe(self) -> str:
        if self.lm is None:
            return "greedy"
        o = self.options
        return f"beam {o.beam_size}, LM {self.lm} (weight {o.lm_weight:g}, word score {o.word_score:g})"


GREEDY = Decoding(lm=None)
