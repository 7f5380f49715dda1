"""English prose for the default language model, from Debian packages available offline.

    python3 -m training.lm_text data/lm/text          # one file per source, one raw sentence per line

Sources (install with `apt-get install -y fortunes bible-kjv python3.11-doc dict-gcide dict-foldoc dict-jargon
wordnet-base manpages`): fortunes, the KJV Bible, the Python documentation's prose (the loaders of
`training.texts`), the GNU Collaborative International Dictionary of English (definitions and quotations), FOLDOC,
the Jargon File, WordNet's glosses and example sentences, and the Linux man-pages project. Missing sources are
skipped with the package that provides them.

Lines are raw text split at sentence ends: `asr lm build` normalises them with `asr.tokenizer.normalize_text` and
leaves out the dev and test sentences, so nothing here needs to know about them.
"""
from __future__ import annotations

import argparse
import gzip
import re
import shutil
import subprocess
import sys
from pathlib import Path

from training.texts import (FORTUNES_DIR, PYTHON_DOCS_DIR, bible_paragraphs, fortune_paragraphs,
                            python_docs_paragraphs, split_sentences)

DICTD_DIR = Path("/usr/share/dictd")
WORDNET_DIR = Path("/usr/share/wordnet")

PACKAGES = {"fortunes": "fortunes", "bible": "bible-kjv", "python-docs": "python3.11-doc",
            "gcide": "dict-gcide", "foldoc": "dict-foldoc", "jargon": "dict-jargon", "wordnet": "wordnet-base",
            "manpages": "manpages"}

_GCIDE_NOISE = re.compile(r"\[(?:1913 Webster|PJC|WordNet 1\.5|Obs\.|R\.|Archaic|Colloq\.)[^\]]*\]|\\[^\\\n]*\\"
                          r"|--[A-Z][\w. ]*\.?|\{|\}")
_TROFF_ESCAPE = re.compile(r"\\f[BIRP]|\\f\(..|\\\(..|\\[&|^-]|\\\*\(..|\\\*.|\\s[-+]?\d|\\e")


def _paragraphs_from_blocks(text: str):
    for block in re.split(r"\n\s*\n", text):
        block = " ".join(block.split())
        if block:
            yield block


def dictd_paragraphs(name: str):
    """Paragraphs of a dictd dictionary (gzip-compatible .dict.dz), markup and citations removed."""
    text = gzip.open(DICTD_DIR / f"{name}.dict.dz").read().decode("utf-8", errors="replace")
    for block in _paragraphs_from_blocks(text):
        yield _GCIDE_NOISE.sub(" ", block).replace("Syn:", " ").replace("Defn:", " ")


def wordnet_paragraphs():
    """WordNet glosses and their quoted examples, one synset per paragraph."""
    for part in ("noun", "verb", "adj", "adv"):
        for line in (WORDNET_DIR / f"data.{part}").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(" ") or "|" not in line:
                continue
            gloss = line.split("|", 1)[1]
            yield from (g.strip(' "') for g in gloss.split(";"))


def manpage_paragraphs():
    """Text lines of the man-pages project's pages with troff requests and escapes stripped."""
    listing = subprocess.run(["dpkg", "-L", "manpages"], capture_output=True, text=True).stdout.split()
    for page in sorted(p for p in listing if p.endswith(".gz") and "/man/man" in p):
        lines = []
        for line in gzip.open(page).read().decode("utf-8", errors="replace").splitlines():
            if line.startswith((".", "'")):
                if line.startswith((".PP", ".SH", ".TP", ".IP", ".P", ".LP")) and lines:
                    yield _TROFF_ESCAPE.sub("", " ".join(lines))
                    lines = []
                continue
            lines.append(line)
        if lines:
            yield _TROFF_ESCAPE.sub("", " ".join(lines))


def available() -> dict:
    """name -> paragraph generator function for each installed source."""
    found = {}
    if FORTUNES_DIR.is_dir():
        found["fortunes"] = fortune_paragraphs
    if shutil.which("bible"):
        found["bible"] = bible_paragraphs
    if PYTHON_DOCS_DIR.is_dir():
        found["python-docs"] = python_docs_paragraphs
    for name in ("gcide", "foldoc", "jargon"):
        if (DICTD_DIR / f"{name}.dict.dz").exists():
            found[name] = lambda name=name: dictd_paragraphs(name)
    if (WORDNET_DIR / "data.noun").exists():
        found["wordnet"] = wordnet_paragraphs
    if Path("/usr/share/man/man7/man-pages.7.gz").exists():
        found["manpages"] = manpage_paragraphs
    return found


def write_sources(out_dir: Path) -> list[Path]:
    """Write OUT_DIR/SOURCE.txt for every installed source; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = available()
    for name, package in PACKAGES.items():
        if name not in sources:
            print(f"lm_text: skipping {name}: apt-get install -y {package}", file=sys.stderr)
    written = []
    for name, paragraphs in sources.items():
        path = out_dir / f"{name}.txt"
        with open(path, "w", encoding="utf-8") as out:
            for paragraph in paragraphs():
                for sentence in split_sentences(paragraph):
                    if sentence.strip():
                        out.write(sentence.strip() + "\n")
        written.append(path)
        print(f"lm_text: {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    write_sources(parser.parse_args(argv).out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
