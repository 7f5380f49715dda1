"""lstm-asr: log-mel features, an LSTM acoustic model trained with CTC, streaming and offline recognition.

    import asr
    model = asr.load_model("stream")
    print(model.transcribe("talk.mp3").text)

(see asr/api.py). The API is imported on first use, so `import asr` and `asr --help` stay light.
"""
__version__ = "0.1.0"
__all__ = ["Model", "load_model", "__version__"]


def __getattr__(name: str):
    if name in ("Model", "load_model"):
        from asr import api

        return getattr(api, name)
    raise AttributeError(f"module 'asr' has no attribute {name!r}")
