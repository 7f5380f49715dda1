"""Character tokenizer for LibriSpeech-style transcripts and the one text normaliser of the project.

The vocabulary is the CTC blank, space, apostrophe and A-Z (29 symbols). `normalize_text` is used both to make
training labels and to make WER references, so the two can never disagree.
"""
from __future__ import annotations

import re
import unicodedata

BLANK = 0
VOCAB: tuple[str, ...] = ("<blank>", " ", "'") + tuple(chr(c) for c in range(ord("A"), ord("Z") + 1))
_INDEX = {ch: i for i, ch in enumerate(VOCAB)}

_NOT_ALLOWED = re.compile(r"[^A-Z' ]+")
_SPACES = re.compile(r"\s+")
_LONE_APOSTROPHE = re.compile(r"(?<![A-Z])'|'(?![A-Z])")


def normalize_text(text: str) -> str:
    """Upper-case A-Z, apostrophes inside words and single spaces, like LibriSpeech transcripts.

    Accents are folded ("café" -> "CAFE"), hyphens and other punctuation become spaces, and apostrophes that do not
    sit between letters ("'tis", "dogs'") are dropped. Digits are not spelled out: they become spaces.
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.upper().replace("\u2019", "'").replace("`", "'")
    text = _NOT_ALLOWED.sub(" ", text)
    text = _LONE_APOSTROPHE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


class Tokenizer:
    """Maps normalised text to label ids and back. Id 0 is the CTC blank."""

    vocab = VOCAB
    blank = BLANK

    def __len__(self) -> int:
        return len(VOCAB)

    def encode(self, text: str) -> list[int]:
        """Normalise `text` and return its label ids (no blanks)."""
        return [_INDEX[ch] for ch in normalize_text(text)]

    def decode(self, ids) -> str:
        """Label ids (blanks allowed and skipped) -> text. No CTC collapsing: see `asr.decoding` for that."""
        return "".join(VOCAB[i] for i in ids if i != BLANK)
