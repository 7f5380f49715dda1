"""Word n-gram language models: the LM directory format of the project, building one with KenLM, loading one.

An LM directory holds

    lm.bin      KenLM binary (quantized trie) of a word n-gram model over normalised words
    words.txt   the lexicon: one word per line, every word the decoder can emit (the LM's words seen often enough)
    lm.json     metadata: order, pruning, sources, sentences and words trained on, vocabulary size, and the sentences
                excluded (dev and test sentences never seen by the LM)

The shipped English LM is asr/models/lm ("default"), built by training/recipe_lm.sh. Text goes through the one
normaliser of the project (`asr.tokenizer.normalize_text`), so LM words are spelt exactly like transcripts.

    info = build_language_model(["a.txt", "b.txt"], "data/my_lm", order=3, exclude_files=["test_sentences.txt"])
    lm = load_language_model("default")          # or a directory path
    lm.oov_rate(["dev_sentences.txt"])            # (out-of-vocabulary words, words)

Building needs KenLM's `lmplz` and `build_binary` on PATH (install.sh builds them from the kenlm sdist).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from asr.tokenizer import normalize_text

LM_FORMAT = "lstm-asr-lm"
DEFAULT_LM_DIR = Path(__file__).parent / "models" / "lm"
LM_NAMES = {"default": DEFAULT_LM_DIR}
MIN_CONTAINED_WORDS = 3  # excluded sentences this long are also removed from inside longer lines


class LanguageModelError(ValueError):
    """An LM directory that is missing or incomplete, or KenLM tools that are missing."""


@dataclass
class LanguageModel:
    """A loaded LM directory: its words and metadata. The decoders build their search structures from it once
    (`asr.lm_decoding`) and share them between streams."""

    directory: Path
    words: list[str]
    metadata: dict = field(default_factory=dict)

    @property
    def binary(self) -> Path | None:
        path = self.directory / "lm.bin"
        return path if path.exists() else None

    def oov_rate(self, sentence_files: Iterable[str | os.PathLike]) -> tuple[int, int]:
        """(out-of-vocabulary word tokens, word tokens) over the normalised lines of `sentence_files`."""
        vocabulary = set(self.words)
        oov = total = 0
        for path in sentence_files:
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                words = normalize_text(line).split()
                total += len(words)
                oov += sum(w not in vocabulary for w in words)
        return oov, total


def lm_directory(name_or_path: str | os.PathLike) -> Path:
    """"default" or an LM directory path -> the directory, checked for lm.json and words.txt."""
    directory = LM_NAMES.get(str(name_or_path), Path(name_or_path))
    for needed in ("words.txt", "lm.json"):
        if not (directory / needed).is_file():
            hint = " (run training/recipe_lm.sh)" if str(name_or_path) in LM_NAMES else ""
            raise LanguageModelError(f"{directory}: not an LM directory, {needed} is missing{hint}")
    return directory


_LOADED: dict[Path, LanguageModel] = {}


def load_language_model(name_or_path: str | os.PathLike = "default") -> LanguageModel:
    """Load an LM directory ("default" is the shipped English LM). Loaded once per process and shared."""
    directory = lm_directory(name_or_path).resolve()
    if directory not in _LOADED:
        metadata = json.loads((directory / "lm.json").read_text(encoding="utf-8"))
        if metadata.get("format") != LM_FORMAT:
            raise LanguageModelError(f"{directory}/lm.json: format is {metadata.get('format')!r}, not {LM_FORMAT!r}")
        words = (directory / "words.txt").read_text(encoding="utf-8").split()
        _LOADED[directory] = LanguageModel(directory, words, metadata)
    return _LOADED[directory]


# --- building --------------------------------------------------------------------------------------------------------
def read_sentences(paths: Iterable[str | os.PathLike]) -> set[str]:
    """The normalised non-empty lines of sentence files (dev/test lists to exclude)."""
    out: set[str] = set()
    for path in paths:
        out.update(t for t in (normalize_text(ln) for ln in Path(path).read_text(encoding="utf-8").splitlines()) if t)
    return out


class SentenceFilter:
    """True for a normalised line that is one of the excluded sentences or, for those of at least
    MIN_CONTAINED_WORDS words, contains one between word boundaries."""

    def __init__(self, sentences: Iterable[str]):
        self.exact: set[str] = set()
        self.by_prefix: dict[tuple, set[tuple]] = defaultdict(set)
        for sentence in sentences:
            words = tuple(sentence.split())
            self.exact.add(" ".join(words))
            if len(words) >= MIN_CONTAINED_WORDS:
                self.by_prefix[words[:MIN_CONTAINED_WORDS]].add(words)

    def __call__(self, line: str) -> bool:
        if line in self.exact:
            return True
        words = line.split()
        for i in range(len(words) - MIN_CONTAINED_WORDS + 1):
            for sentence in self.by_prefix.get(tuple(words[i : i + MIN_CONTAINED_WORDS]), ()):
                if tuple(words[i : i + len(sentence)]) == sentence:
                    return True
        return False


def kenlm_tools() -> tuple[str, str]:
    """Paths of KenLM's lmplz and build_binary, or a LanguageModelError saying how to get them."""
    tools = shutil.which("lmplz"), shutil.which("build_binary")
    if None in tools:
        raise LanguageModelError("KenLM's lmplz and build_binary are not on PATH: run `bash install.sh` (it builds "
                                 "them from the kenlm sdist into /usr/local/bin)")
    return tools


def build_language_model(texts: Iterable[str | os.PathLike], out_dir: str | os.PathLike, order: int = 4,
                         prune: Iterable[int] = (0, 0, 1, 1), exclude_files: Iterable[str | os.PathLike] = (),
                         lexicon_min_count: int = 1, memory: str = "25%", quantize_bits: int = 8, log=None) -> dict:
    """Build an LM directory from raw text files (one sentence or line of prose per line).

    Lines are normalised with `normalize_text`; lines that are, or contain, a sentence of `exclude_files` are left
    out. `prune[i]` drops (i+1)-grams seen at most that many times (KenLM's --prune; the first must be 0). The
    lexicon (words.txt) keeps the words seen at least `lexicon_min_count` times: rarer ones (in a large text mostly
    misspellings, foreign and archaic forms) stay in the LM but the decoder never emits them.
    Returns the metadata written to lm.json.
    """
    lmplz, build_binary = kenlm_tools()
    prune = [int(p) for p in prune][:order]
    texts, exclude_files = [Path(t) for t in texts], [Path(f) for f in exclude_files]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    excluded = read_sentences(exclude_files)
    is_excluded = SentenceFilter(excluded)
    started = time.monotonic()
    counts: Counter[str] = Counter()
    sources, lines_kept, lines_dropped = [], 0, 0
    with tempfile.TemporaryDirectory(dir=out_dir, prefix="build-") as tmp:
        corpus = Path(tmp) / "corpus.txt"
        with open(corpus, "w", encoding="utf-8") as out:
            for path in texts:
                kept = dropped = 0
                with open(path, encoding="utf-8", errors="replace") as f:
                    for raw in f:
                        line = normalize_text(raw)
                        if not line:
                            continue
                        if is_excluded(line):
                            dropped += 1
                            continue
                        words = line.split()
                        counts.update(words)
                        out.write(line + "\n")
                        kept += 1
                sources.append({"file": path.name, "lines": kept, "lines_excluded": dropped})
                lines_kept += kept
                lines_dropped += dropped
        if not counts:
            raise LanguageModelError("no text left to build an LM from (empty files, or everything excluded)")
        arpa = Path(tmp) / "lm.arpa"
        command = [lmplz, "-o", str(order), "-S", memory, "-T", tmp, "--discount_fallback"]
        if any(prune):
            command += ["--prune", *map(str, prune)]
        _run(command, stdin=corpus, stdout=arpa, log=log)
        binary = out_dir / "lm.bin.tmp"
        _run([build_binary, "-q", str(quantize_bits), "-b", str(quantize_bits), "-a", "22", "trie", str(arpa),
              str(binary)], log=log)
        os.replace(binary, out_dir / "lm.bin")
    words = sorted(w for w, n in counts.items() if n >= lexicon_min_count)
    (out_dir / "words.txt").write_text("".join(w + "\n" for w in words), encoding="utf-8")
    metadata = {
        "format": LM_FORMAT, "version": 1, "tool": "kenlm lmplz + build_binary (quantized trie)",
        "order": order, "prune": prune, "quantize_bits": quantize_bits,
        "sources": sources, "sentences": lines_kept, "words": sum(counts.values()), "lm_vocabulary": len(counts),
        "vocabulary": len(words), "lexicon_min_count": lexicon_min_count,
        "excluded": {"files": [str(f) for f in exclude_files], "sentences": len(excluded),
                     "lines_dropped": lines_dropped},
        "size_bytes": (out_dir / "lm.bin").stat().st_size, "build_seconds": round(time.monotonic() - started, 1),
    }
    (out_dir / "lm.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    _LOADED.pop(out_dir.resolve(), None)
    return metadata


def _run(command: list[str], stdin: Path | None = None, stdout: Path | None = None, log=None) -> None:
    with open(stdin or os.devnull, "rb") as fin, open(stdout or os.devnull, "wb") as fout:
        done = subprocess.run(command, stdin=fin, stdout=fout, stderr=subprocess.PIPE)
    if log:
        log(done.stderr.decode(errors="replace"))
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise LanguageModelError(f"{Path(command[0]).name} failed ({done.returncode}): " + " | ".join(tail))
