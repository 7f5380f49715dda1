"""The websocket service: a Vosk-compatible streaming recognizer over `asr` (see docs in PROTOCOL.md).

settings (every option, read once) -> protocol (messages, no I/O) -> session (one stream, no I/O) -> batcher (opens
and closes streams; many streams, fair model steps) -> app (I/O).
"""
