"""The websocket service: a Vosk-compatible streaming recognizer over `asr` (see docs in PROTOCOL.md).

protocol (messages, no I/O) -> session (one stream, no I/O) -> batcher (many streams, one model step) -> app (I/O).
"""
