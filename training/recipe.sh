#!/usr/bin/env bash
# The recipe of the shipped models: real speech + synthetic speech -> `stream` and `offline`, judged on real speech
# beside pocketsphinx. These are the exact settings of the shipped models. Every stage is resumable: run it again
# after a stop (or in the next work session) and it continues where it was.
#
#   pip install -e ".[tts,bench]"                 # neural voices (piper, hibari) and pocketsphinx
#   apt-get install asterisk-core-sounds-en asterisk-core-sounds-en-g722    # the Asterisk dev part
#   bash training/recipe.sh                       # REAL=../shared/data/real DATA=data RUNS=runs by default
#
# Stages (each skipped when its output exists; train continues from RUNS/*/last.pt):
#   1. real      training.real_speech: train / dev suite / held-out sentences, one augmented copy of train
#   2. synth     training/recipe_data.sh: 6 h synthetic train, dev, held-out synthetic test
#   3. train     both models at once, one thread each, for at most MINUTES per call (--resume continues)
#   4. export    best.pt -> asr/models/NAME.pt (no optimizer state)
#   5. evaluate  every dev-suite part and the synthetic test, pocketsphinx on the same files; curves
# STAGES="train" bash training/recipe.sh runs only the named stages.
set -euo pipefail
cd "$(dirname "$0")/.."
REAL=${REAL:-../shared/data/real}
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
MINUTES=${MINUTES:-600}
STAGES=${STAGES:-"real synth train export evaluate"}
STREAM_ARGS=${STREAM_ARGS:-"--hidden 320 --layers 3 --stack 3 --steps 3800 --eval-every 400 --lr 2e-3"}
OFFLINE_ARGS=${OFFLINE_ARGS:-"--hidden 256 --layers 3 --stack 3 --steps 1900 --eval-every 400 --lr 2e-3"}
mkdir -p "$DATA" "$RUNS"
stage() { [[ " $STAGES " == *" $1 "* ]]; }

if stage real && [ ! -f "$DATA/real/train-aug1/recordings.tsv" ]; then
    python -m training.real_speech --real "$REAL" --out "$DATA/real" --asterisk --augment-copies 1
fi
if stage synth && [ ! -d "$DATA/corpus/train" ]; then
    bash training/recipe_data.sh "$DATA"
fi
if stage train; then
    common=(--train "$DATA/real/train" "$DATA/real/train-aug1" "$DATA/corpus/train"
            --dev "$DATA/real/dev/cv" "$DATA/real/dev/an4" "$DATA/real/dev/so762" --dev-max-utterances 400
            --normalization running --max-minutes "$MINUTES" --threads 1 --save-every 100 --resume)
    asr train "${common[@]}" --out "$RUNS/stream" $STREAM_ARGS >> "$RUNS/stream.log" 2>&1 &
    asr train "${common[@]}" --out "$RUNS/offline" --bidirectional $OFFLINE_ARGS >> "$RUNS/offline.log" 2>&1 &
    wait
fi
if stage export; then
    for name in stream offline; do
        python -c "from asr.checkpoint import export_model; export_model('$RUNS/$name/best.pt', 'asr/models/$name.pt')"
    done
fi
if stage evaluate; then
    python -m training.dev_suite --suite "$DATA/real" --extra "$DATA/corpus/test" --models stream offline \
        --pocketsphinx --json "$RUNS/dev_suite.json" | tee "$RUNS/dev_suite.md"
    python -m training.plot_curves "$RUNS/stream" "$RUNS/offline" --out docs/training_curves.png
fi
