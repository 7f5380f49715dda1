"""The wire protocol (Vosk's, plus an `error` reply): parse client messages, validate the config, build replies.

No I/O here. Every rejection is a ProtocolError carrying the websocket close code that goes with it:
  1003 unsupported data: well-formed but unsupported (sample_rate outside 8000..48000, an unknown command)
  1007 invalid payload: not JSON, not an object, a value of the wrong type
  1008 policy: config after audio, a model this server does not serve, missing or wrong token, limits of a stream
  1009 message too big
  1013 try again later: server full or draining
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from asr.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from asr.decoding import Alternative, Transcript

UNSUPPORTED_DATA = 1003
INVALID_PAYLOAD = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
TRY_AGAIN_LATER = 1013
MAX_ALTERNATIVES = 100


class ProtocolError(Exception):
    """A client message the server refuses: reply `{"error": message}`, then close with `code`."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class StreamConfig:
    """A stream's settings, from the optional first `{"config": {...}}` message."""

    sample_rate: int = 16000
    words: bool = True
    max_alternatives: int = 0
    phrase_list: tuple[str, ...] = ()
    model: str | None = None


@dataclass(frozen=True)
class Eof:
    pass


@dataclass(frozen=True)
class Reset:
    pass


def parse_text_message(text: str) -> StreamConfig | Eof | Reset:
    """A text frame -> StreamConfig, Eof or Reset. Raises ProtocolError (1007 bad JSON, 1003 unknown command)."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ProtocolError(INVALID_PAYLOAD, f"text message is not valid JSON ({error}); "
                            'send {"config": {...}}, {"eof": 1} or {"reset": 1}') from None
    if not isinstance(message, dict):
        raise ProtocolError(INVALID_PAYLOAD, f"text message must be a JSON object, not {type(message).__name__}")
    if "config" in message:
        return parse_config(message["config"])
    for key, command in (("eof", Eof), ("reset", Reset)):
        if key in message:
            if message[key] != 1:  # 1 or true, as Vosk clients send
                raise ProtocolError(INVALID_PAYLOAD, f'"{key}" must be 1, got {_show(message[key])}')
            return command()
    raise ProtocolError(UNSUPPORTED_DATA, f"unknown message with keys {sorted(message)[:5]}; "
                        'send {"config": {...}}, {"eof": 1}, {"reset": 1} or binary PCM16 audio')


def parse_config(config) -> StreamConfig:
    """The value of a `config` message -> StreamConfig. Unknown keys are ignored."""
    if not isinstance(config, dict):
        raise ProtocolError(INVALID_PAYLOAD, f'"config" must be a JSON object, not {type(config).__name__}')
    # Types and ranges are checked before any arithmetic: JSON numbers can be any size (a 400-digit integer, 1e400).
    sample_rate = config.get("sample_rate", 16000)
    if (isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float))
            or isinstance(sample_rate, float) and not (math.isfinite(sample_rate) and sample_rate.is_integer())):
        raise ProtocolError(INVALID_PAYLOAD, f"sample_rate {_show(sample_rate)} is not a whole number of Hz")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:  # exact for ints of any size
        raise ProtocolError(UNSUPPORTED_DATA, f"sample_rate {_show(sample_rate)} is outside "
                            f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}")
    sample_rate = int(sample_rate)
    words = config.get("words", True)
    if words not in (True, False):  # also 0 and 1
        raise ProtocolError(INVALID_PAYLOAD, f"words must be true/false or 1/0, got {_show(words)}")
    alternatives = config.get("max_alternatives", 0)
    if isinstance(alternatives, bool) or not isinstance(alternatives, int) or not 0 <= alternatives <= MAX_ALTERNATIVES:
        raise ProtocolError(INVALID_PAYLOAD, f"max_alternatives must be an integer within 0..{MAX_ALTERNATIVES}, "
                            f"got {_show(alternatives)}")
    phrase_list = config.get("phrase_list", [])
    if not isinstance(phrase_list, list) or not all(isinstance(p, str) for p in phrase_list):
        raise ProtocolError(INVALID_PAYLOAD, "phrase_list must be a list of strings")
    model = config.get("model")
    if model is not None and not isinstance(model, str):
        raise ProtocolError(POLICY_VIOLATION, f"model must be a model name, got {_show(model)}")
    return StreamConfig(sample_rate, bool(words), alternatives, tuple(phrase_list), model)


def _show(value, limit: int = 40) -> str:
    """A client's value for an error message, cut short (a number may have thousands of digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** limit:
        return f"(an integer of {len(str(abs(value)))} digits)"  # str() of a huge int is fine below 4300 digits
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- replies --------------------------------------------------------------------------------------------------------
def partial_reply(text: str) -> dict:
    return {"partial": text}


def final_reply(transcript: Transcript, config: StreamConfig) -> dict:
    """A final result: `{"text", "result"}`, or without `result` when words are off, or Vosk's n-best shape."""
    result = [word.to_dict() for word in transcript.words]
    if config.max_alternatives > 0:
        # The beam's n best, each with its share of the final beam's probability (greedy decoding: one, 1.0).
        alternatives = []
        for alt in transcript.alternatives or [Alternative(transcript.text, transcript.words, confidence=1.0)]:
            entry = {"text": alt.text, "confidence": round(alt.confidence, 4)}
            if config.words:
                entry["result"] = [word.to_dict() for word in alt.words]
            alternatives.append(entry)
        return {"alternatives": alternatives[: config.max_alternatives]}
    reply = {"text": transcript.text}
    if config.words:
        reply["result"] = result
    return reply


def error_reply(message: str) -> dict:
    return {"error": message}


def encode(reply: dict) -> str:
    return json.dumps(reply, ensure_ascii=False)
