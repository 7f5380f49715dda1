"""English sentences to speak: fortunes, the KJV Bible, Python documentation prose, or the user's own file.

Every sentence comes out as a LibriSpeech-style transcript (`asr.tokenizer.normalize_text`), and only sentences
a text-to-speech engine will read exactly as written are kept:

- 3..20 words after normalising;
- no digits, no symbols a voice would read out or skip (`& % $ _ = / < > | ...`), no code (`os.path`, `f()`);
- no abbreviations or acronyms (`Mr.`, `etc.`, `IBM`, `XII`) and no spelled-out single letters but A, I and O,
  since a voice says "mister" or "eye bee em" where the transcript says MR or IBM.

    sentences = load_sentences()                      # sorted, unique, every available source
    picked = pick_sentences(sentences, 300, seed=7)   # the same 300 for the same seed
    write_sentences("test_sentences.txt", picked)

Parsing all three sources takes about a second, so nothing is cached on disk.
"""
from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from asr.tokenizer import normalize_text

MIN_WORDS = 3
MAX_WORDS = 20

FORTUNES_DIR = Path("/usr/share/games/fortunes")
FORTUNE_SKIP = {"ascii-art", "translate-me", "perl", "linux", "linuxcookie", "debian", "computers"}  # code, art
BIBLE_RANGE = "Gen1:1-Rev22:21"
PYTHON_DOCS_DIR = Path("/usr/share/doc/python3.11/html/_sources")
PYTHON_DOCS_SKIP = {"c-api", "whatsnew", "distutils", "includes"}

# Where each source comes from, for the "not installed" message.
SOURCES = {
    "fortunes": "apt-get install -y fortunes",
    "bible": "apt-get install -y bible-kjv-text",
    "python-docs": "apt-get install -y python3.11-doc",
}

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]\u201d\u2019]*\s+(?=[\"'(\u201c\u2018]?[A-Z])")
_CLAUSE_END = re.compile(r"(?<=[;:])\s+")
_NOT_SPOKEN = re.compile(r"[0-9_=/\\<>|@#$%^&*+~{}\[\]`]")   # read aloud oddly, or not at all
_CODE = re.compile(r"\w\.\w|\w\(")                            # os.path, e.g., f(x)
_ACRONYM = re.compile(r"\b[A-Z]{2,5}\b")
_ABBREVIATIONS = {"MR", "MRS", "MS", "DR", "ST", "JR", "SR", "VS", "ETC", "IE", "EG", "CF", "NB", "PS", "PH",
                  "LTD", "INC", "CO", "PROF", "GEN", "COL", "CAPT", "LT", "SGT", "REV", "HON", "MT", "FT"}
_SINGLE_LETTERS_OK = {"A", "I", "O"}
_WORDS_OK_IN_CAPS = {"LORD", "GOD", "OK"}


def clean_sentence(raw: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> str | None:
    """The normalised transcript of `raw` if a voice would read it as written, else None."""
    raw = raw.strip()
    if not raw or _NOT_SPOKEN.search(raw) or _CODE.search(raw):
        return None
    if raw.upper() != raw:  # a mixed-case sentence with an all-caps word: an acronym or a numeral
        if any(w not in _WORDS_OK_IN_CAPS for w in _ACRONYM.findall(raw)):
            return None
    text = normalize_text(raw)
    words = text.split()
    if not min_words <= len(words) <= max_words:
        return None
    for w in words:
        if w in _ABBREVIATIONS or (len(w) == 1 and w not in _SINGLE_LETTERS_OK):
            return None
    return text


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of one paragraph; sentences over MAX_WORDS are cut again at semicolons and colons."""
    out = []
    for sentence in _SENTENCE_END.split(" ".join(paragraph.split())):
        if len(sentence.split()) > MAX_WORDS:
            out.extend(_CLAUSE_END.split(sentence))
        else:
            out.append(sentence)
    return out


def _clean_all(paragraphs) -> list[str]:
    out = []
    for paragraph in paragraphs:
        for sentence in split_sentences(paragraph):
            text = clean_sentence(sentence)
            if text:
                out.append(text)
    return out


def fortune_paragraphs(directory: Path = FORTUNES_DIR):
    """Each fortune as one paragraph, without its '-- Author' attribution."""
    for path in sorted(directory.iterdir()):
        if path.suffix or path.name in FORTUNE_SKIP or not path.is_file():
            continue
        u8 = path.with_name(path.name + ".u8")
        text = (u8 if u8.exists() else path).read_text(encoding="utf-8", errors="replace")
        for fortune in re.split(r"^%\s*$", text, flags=re.M):
            lines = [ln for ln in fortune.splitlines() if not ln.strip().startswith("--")]
            yield " ".join(lines)


def bible_paragraphs():
    """Each chapter of the King James Bible as one paragraph (verses run across sentence ends)."""
    out = subprocess.run(["bible", "-f", BIBLE_RANGE], capture_output=True, text=True, check=True).stdout
    chapter, verses = None, []
    for line in out.splitlines():
        ref, _, verse = line.partition(" ")
        key = ref.split(":")[0]
        if key != chapter and verses:
            yield " ".join(verses)
            verses = []
        chapter = key
        verses.append(verse)
    if verses:
        yield " ".join(verses)


_ROLE = re.compile(r":[a-z:]+:`[!~]?([^`<]*?)\s*(?:<[^>]*>)?`")
_LITERAL = re.compile(r"``([^`]*)``")


def python_docs_paragraphs(directory: Path = PYTHON_DOCS_DIR):
    """Unindented prose paragraphs of the reStructuredText sources; roles and literals become their plain text."""
    for path in sorted(directory.rglob("*.rst.txt")):
        if PYTHON_DOCS_SKIP & set(path.relative_to(directory).parts):
            continue
        paragraph: list[str] = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines() + [""]:
            prose = line and not line[0].isspace() and not line.startswith((".. ", "..", ">>>", "* ", "- ", "#"))
            prose = prose and not re.fullmatch(r"([=\-~^*\"'+#`:.])\1+", line.strip())
            if prose:
                paragraph.append(line)
                continue
            if paragraph:
                text = _LITERAL.sub(r"\1", _ROLE.sub(r"\1", " ".join(paragraph)))
                yield text.replace("::", ":")
            paragraph = []


def available_sources() -> list[str]:
    """The built-in sources installed on this machine."""
    found = []
    if FORTUNES_DIR.is_dir():
        found.append("fortunes")
    if shutil.which("bible"):
        found.append("bible")
    if PYTHON_DOCS_DIR.is_dir():
        found.append("python-docs")
    return found


def source_sentences(source: str) -> list[str]:
    """Cleaned sentences of one built-in source, in source order (duplicates kept)."""
    if source not in SOURCES:
        raise ValueError(f"unknown text source {source!r}; choose from {', '.join(SOURCES)}")
    if source not in available_sources():
        raise RuntimeError(f"text source {source!r} is not installed: {SOURCES[source]}")
    paragraphs = {"fortunes": fortune_paragraphs, "bible": bible_paragraphs,
                  "python-docs": python_docs_paragraphs}[source]()
    return _clean_all(paragraphs)


def read_text_file(path: str | Path, min_words: int = 1, max_words: int = 50) -> list[str]:
    """A user's sentences, one per line, normalised; lines with digits or symbols are dropped with a warning."""
    kept, dropped = [], 0
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        text = clean_sentence(line, min_words, max_words)
        if text:
            kept.append(text)
        else:
            dropped += 1
    if dropped:
        print(f"warning: {path}: dropped {dropped} lines with digits, symbols, abbreviations or over {max_words} "
              f"words (a voice would not read them as written)", file=sys.stderr)
    return kept


def read_sentence_list(path: str | Path) -> set[str]:
    """Normalised sentences of a file written by `write_sentences` (or any one-per-line file), for exclusion."""
    return {t for t in (normalize_text(ln) for ln in Path(path).read_text(encoding="utf-8").splitlines()) if t}


def load_sentences(sources=None, text_files=(), exclude=()) -> list[str]:
    """Sorted unique sentences from the built-in `sources` (default: all installed) and `text_files`,
    minus the normalised sentences in `exclude`."""
    if sources is None:
        sources = available_sources()
    pool: set[str] = set()
    for source in sources:
        pool.update(source_sentences(source))
    for path in text_files:
        pool.update(read_text_file(path))
    return sorted(pool - set(exclude))


def iter_sentences(sentences: list[str], seed: int):
    """Endless seeded random order: a shuffle of all `sentences`, then another shuffle, and so on, so sentences
    repeat only after every one has been used."""
    if not sentences:
        raise ValueError("no sentences to pick from (all excluded, or no text source installed)")
    rng = np.random.default_rng(seed)
    while True:
        for i in rng.permutation(len(sentences)):
            yield sentences[i]


def pick_sentences(sentences: list[str], n: int, seed: int) -> list[str]:
    """The first `n` of `iter_sentences(sentences, seed)`: the same `n` sentences for the same seed."""
    return list(itertools.islice(iter_sentences(sentences, seed), n))


def write_sentences(path: str | Path, sentences) -> None:
    """One sentence per line, in order, each once."""
    seen = dict.fromkeys(sentences)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(s + "\n" for s in seen), encoding="utf-8")
