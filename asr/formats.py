"""Output formats of `asr transcribe`: text, JSON lines, SRT and WebVTT subtitles."""
from __future__ import annotations

import json

from asr.decoding import Transcript, Word

FORMATS = ("text", "json", "srt", "vtt")
SUFFIXES = {"text": ".txt", "json": ".json", "srt": ".srt", "vtt": ".vtt"}
CUE_PAUSE = 0.6  # seconds of silence between words that start a new cue
CUE_MAX_CHARS = 84  # two lines of 42 characters
CUE_MAX_SECONDS = 7.0


def subtitle_cues(words: list[Word]) -> list[list[Word]]:
    """Group words into cues, split at pauses and at a readable length."""
    cues: list[list[Word]] = []
    for word in words:
        cue = cues[-1] if cues else None
        if (cue is None or word.start - cue[-1].end >= CUE_PAUSE
                or len(" ".join(w.word for w in cue + [word])) > CUE_MAX_CHARS
                or word.end - cue[0].start > CUE_MAX_SECONDS):
            cues.append([word])
        else:
            cue.append(word)
    return cues


def _timestamp(seconds: float, separator: str) -> str:
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(transcript: Transcript) -> str:
    blocks = []
    for number, cue in enumerate(subtitle_cues(transcript.words), 1):
        span = f"{_timestamp(cue[0].start, ',')} --> {_timestamp(cue[-1].end, ',')}"
        blocks.append(f"{number}\n{span}\n{' '.join(w.word for w in cue)}\n")
    return "\n".join(blocks)


def to_vtt(transcript: Transcript) -> str:
    blocks = ["WEBVTT\n"]
    for cue in subtitle_cues(transcript.words):
        blocks.append(f"{_timestamp(cue[0].start, '.')} --> {_timestamp(cue[-1].end, '.')}\n"
                      f"{' '.join(w.word for w in cue)}\n")
    return "\n".join(blocks)


def to_json(transcript: Transcript, path: str, duration: float) -> str:
    return json.dumps({"path": path, "text": transcript.text, "duration": round(duration, 3),
                       "words": [w.to_dict() for w in transcript.words]})


def render(transcript: Transcript, fmt: str, path: str, duration: float) -> str:
    """The transcript of one file in `fmt`, ending with a newline."""
    if fmt == "text":
        return transcript.text + "\n"
    if fmt == "json":
        return to_json(transcript, path, duration) + "\n"
    if fmt == "srt":
        return to_srt(transcript)
    if fmt == "vtt":
        return to_vtt(transcript)
    raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
