#!/usr/bin/env bash
# The recipe of the shipped English language model asr/models/lm ("default"): a pruned 4-gram KenLM over the
# English prose available offline, with every dev and test sentence left out; its lexicon is the words seen twice
# or more (about 128k).
#
#   apt-get install -y fortunes bible-kjv python3.11-doc dict-gcide dict-foldoc dict-jargon wordnet-base manpages
#   bash training/recipe_lm.sh                  # DATA=data TEXT_DIR=$DATA/lm/text OUT=asr/models/lm by default
#   bash training/recipe_lm.sh --exclude extra_sentences.txt     # more sentences to leave out
#
# The sentences left out (any LM line that is one, or contains one of 3+ words, is dropped):
#   HELDOUT  the real-speech dev/test suite     (default $DATA/real/heldout_sentences.txt)
#   TEST     the synthetic test sentences       (default $DATA/test_sentences.txt)
#   DEV      the synthetic dev sentences        (default $DATA/dev_sentences.txt)
# A missing file stops the recipe: an LM that has seen test sentences would flatter every result.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data}
OUT=${OUT:-asr/models/lm}
TEXT_DIR=${TEXT_DIR:-$DATA/lm/text}
ORDER=${ORDER:-4}
PRUNE=${PRUNE:-"0 1 1 2"}
LEXICON_MIN_COUNT=${LEXICON_MIN_COUNT:-2}
HELDOUT=${HELDOUT:-$DATA/real/heldout_sentences.txt}
TEST=${TEST:-$DATA/test_sentences.txt}
DEV=${DEV:-$DATA/dev_sentences.txt}
for f in "$HELDOUT" "$TEST" "$DEV"; do
    [ -f "$f" ] || { echo "recipe_lm: $f is missing (set HELDOUT, TEST, DEV or DATA)" >&2; exit 1; }
done
python3 -m training.lm_text "$TEXT_DIR"
# shellcheck disable=SC2086
asr lm build "$TEXT_DIR"/*.txt --out "$OUT" --order "$ORDER" --prune $PRUNE --lexicon-min-count "$LEXICON_MIN_COUNT" \
    --exclude "$HELDOUT" "$TEST" "$DEV" "$@"
asr lm info "$OUT" --oov "$HELDOUT" "$TEST" "$DEV"
