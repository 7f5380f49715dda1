#!/usr/bin/env bash
# Install lstm-asr and everything its tests use, on Debian/Ubuntu:
#   system packages: espeak-ng + flite (speech for tests and `asr synth`), sox/ffmpeg (audio formats),
#                    libportaudio2 (microphone client), chromium (browser test), fortunes + bible-kjv-text (texts)
#                    + cmake, a C++ compiler and boost/zlib/bz2/lzma headers (to build KenLM)
#   Python:          the CPU build of PyTorch, then this package with its test extras (editable), at the versions
#                    in constraints.txt (tested together; ASR_CONSTRAINTS="" installs the newest instead).
#   KenLM:           lmplz and build_binary (`asr lm build`), built once from the kenlm sdist into
#                    $KENLM_PREFIX/bin (default /usr/local/bin; about a minute), skipped when lmplz is on PATH.
# Set ASR_TORCH="torch" (or any pip spec) to choose another torch build, e.g. a CUDA one on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if command -v apt-get >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        espeak-ng flite sox ffmpeg libportaudio2 chromium fortunes bible-kjv-text \
        cmake build-essential libboost-program-options-dev libboost-system-dev libboost-thread-dev \
        libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev >/dev/null
else
    echo "install.sh: no apt-get; install espeak-ng, flite, ffmpeg, libportaudio2 and chromium yourself" >&2
fi

PYTHON=${PYTHON:-python3}
# A bare `torch` resolves to the newest CUDA build (GBs of CUDA libraries): pin the CPU wheel unless told otherwise.
if ! $PYTHON -c "import torch" 2>/dev/null; then
    $PYTHON -m pip install -q "${ASR_TORCH:-torch==2.13.0}"
fi
CONSTRAINTS=${ASR_CONSTRAINTS-constraints.txt}
$PYTHON -m pip install -q -e ".[test]" ${CONSTRAINTS:+-c "$CONSTRAINTS"}

if ! command -v lmplz >/dev/null || ! command -v build_binary >/dev/null; then
    KENLM_PREFIX=${KENLM_PREFIX:-/usr/local}
    kenlm_build=$(mktemp -d)
    $PYTHON -c "import setuptools" 2>/dev/null || $PYTHON -m pip install -q setuptools
    # the sdist only (no wheel build): its CMake project has lmplz and build_binary, the PyPI wheel does not
    $PYTHON -m pip download -q --no-binary :all: --no-deps --no-build-isolation -d "$kenlm_build" "kenlm==0.3.0"
    tar xzf "$kenlm_build"/kenlm-*.tar.gz -C "$kenlm_build"
    cmake -S "$kenlm_build"/kenlm-0.3.0 -B "$kenlm_build/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$kenlm_build/build" --target lmplz build_binary -j "$(nproc)" >/dev/null
    $SUDO install -d "$KENLM_PREFIX/bin"
    $SUDO install -m 755 "$kenlm_build/build/bin/lmplz" "$kenlm_build/build/bin/build_binary" "$KENLM_PREFIX/bin/"
    rm -rf "$kenlm_build"
    command -v lmplz >/dev/null || echo "install.sh: lmplz is in $KENLM_PREFIX/bin: add it to PATH" >&2
fi
if command -v pyenv >/dev/null; then pyenv rehash; fi  # make the new `asr` command visible through pyenv's shims
echo "install.sh: done. Try: asr transcribe samples/hello.wav" >&2
