#!/usr/bin/env bash
# Synthetic LibriSpeech-format corpus for training: test voices and test sentences never reach training.
#
#   training/recipe_data.sh [DATA_DIR]        # default /work/data; ~15 min on 2 cores
#
# DATA_DIR/test_sentences.txt   300 held-out sentences (seed 7)
# DATA_DIR/dev_sentences.txt    sentences of the dev subset
# DATA_DIR/corpus/test          the test sentences spoken by the held-out test voices, no augmentation
# DATA_DIR/corpus/dev           ~15 min from the training voices, unseen sentences, no augmentation
# DATA_DIR/corpus/train         ~6 h from the training voices, half the utterances augmented
#
# The voice split is `--test-voice-fraction 0.2 --voice-split-seed 0` (the defaults) in every command.
set -euo pipefail
DATA=${1:-/work/data}
SYNTH=${SYNTH:-asr synth}
mkdir -p "$DATA"

$SYNTH "$DATA/corpus" --subset test --utterances 300 --seed 7 --dry-run \
    --write-sentences "$DATA/test_sentences.txt"

# Test and dev: the engines the shipped corpus was made with (later engines would change these sets).
$SYNTH "$DATA/corpus" --subset test --voices test --engines espeak,flite,piper,hibari \
    --text-file "$DATA/test_sentences.txt" \
    --utterances 300 --seed 7 --overwrite

$SYNTH "$DATA/corpus" --subset dev --voices train --engines espeak,flite,piper,hibari --hours 0.25 --seed 11 \
    --overwrite \
    --exclude-sentences "$DATA/test_sentences.txt" --write-sentences "$DATA/dev_sentences.txt"

# Training voices: espeak-ng, flite and hibari only. piper's joe voice is fine-tuned from the lessac voice, whose
# Blizzard 2013 data is licensed for research only, so a model trained on it could not be published.
$SYNTH "$DATA/corpus" --subset train --voices train --engines espeak,flite,hibari --hours 6 --seed 1 --overwrite \
    --augment all --augment-prob 0.5 \
    --exclude-sentences "$DATA/test_sentences.txt" --exclude-sentences "$DATA/dev_sentences.txt" \
    --exclude-sentences "$DATA/real/heldout_sentences.txt" --write-sentences "$DATA/train_sentences.txt"
