"""lstm-asr: log-mel features, an LSTM acoustic model trained with CTC, streaming and offline recognition."""
__version__ = "0.1.0"
