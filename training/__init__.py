"""Corpora (LibriSpeech and synthetic), the training loop and evaluation."""
