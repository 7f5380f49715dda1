#!/usr/bin/env bash
# Install lstm-asr and everything its tests use, on Debian/Ubuntu:
#   system packages: espeak-ng + flite (speech for tests and `asr synth`), sox/ffmpeg (audio formats),
#                    libportaudio2 (microphone client), chromium (browser test), fortunes + bible-kjv-text (texts)
#   Python:          the CPU build of PyTorch, then this package with its test extras (editable).
# Set ASR_TORCH="torch" (or any pip spec) to choose another torch build, e.g. a CUDA one on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if command -v apt-get >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        espeak-ng flite sox ffmpeg libportaudio2 chromium fortunes bible-kjv-text >/dev/null
else
    echo "install.sh: no apt-get; install espeak-ng, flite, ffmpeg, libportaudio2 and chromium yourself" >&2
fi

PYTHON=${PYTHON:-python3}
# A bare `torch` resolves to the newest CUDA build (GBs of CUDA libraries): pin the CPU wheel unless told otherwise.
if ! $PYTHON -c "import torch" 2>/dev/null; then
    $PYTHON -m pip install -q "${ASR_TORCH:-torch==2.13.0}"
fi
$PYTHON -m pip install -q -e ".[test]"
if command -v pyenv >/dev/null; then pyenv rehash; fi  # make the new `asr` command visible through pyenv's shims
echo "install.sh: done. Try: asr transcribe samples/hello.wav" >&2
