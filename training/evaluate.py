"""Word and character error rates: during training (batched greedy decoding) and for `asr eval` (the same
transcription path users run)."""
from __future__ import annotations

import json
import logging
import sys

import jiwer
import torch

from asr.audio import AudioError
from asr.decoding import ctc_greedy
from asr.lm_decoding import GREEDY, Decoding
from asr.model import AcousticModel
from asr.tokenizer import normalize_text
from asr.transcribe import BLOCK_SECONDS, transcribe_file
from training.data import UtteranceDataset, bucket_batches
from training.librispeech import Utterance

log = logging.getLogger(__name__)


def error_rates(references: list[str], hypotheses: list[str]) -> dict:
    """Corpus-level WER and CER (fractions) of normalised texts. Empty references are left out."""
    pairs = [(normalize_text(r), normalize_text(h)) for r, h in zip(references, hypotheses)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        raise ValueError("no non-empty reference transcripts to score")
    refs, hyps = zip(*pairs)
    words = jiwer.process_words(list(refs), list(hyps))
    chars = jiwer.process_characters(list(refs), list(hyps))
    return {"wer": words.wer, "cer": chars.cer, "utterances": len(refs),
            "words": sum(len(r.split()) for r in refs)}


@torch.inference_mode()
def evaluate_dataset(model: AcousticModel, dataset: UtteranceDataset, batch_seconds: float = 200.0) -> dict:
    """Greedy decoding of whole utterances in batches (fast; used for dev WER while training)."""
    was_training = model.training
    model.eval()
    device = model.feature_mean.device
    references, hypotheses = [], []
    for indices in bucket_batches(dataset.durations, batch_seconds, seed=0, epoch=0):
        batch = dataset.batch(indices)
        log_probs, out_lengths, _ = model(batch.features.to(device), batch.feature_lengths.to(device))
        for b, text in enumerate(batch.texts):
            references.append(text)
            hypotheses.append(ctc_greedy(log_probs[b, : out_lengths[b]].cpu(), model.dims.frame_shift).text)
    model.train(was_training)
    return error_rates(references, hypotheses)


def evaluate_files(model: AcousticModel, utterances: list[Utterance], jsonl=None, progress: bool = True,
                   decoding: Decoding = GREEDY, second_pass=None, block_seconds: float = BLOCK_SECONDS) -> dict:
    """Transcribe each utterance file as `asr transcribe` would (with `--final-model` when `second_pass` is an
    asr.second_pass.SecondPass), a streaming model fed `block_seconds` at a time, and score it. Unreadable files are reported and counted, not fatal. With `jsonl`
    (a text stream), one JSON object per utterance is written to it."""
    from tqdm import tqdm

    references, hypotheses, failed = [], [], 0
    for utt in tqdm(utterances, desc="eval", unit="utt", disable=not progress, file=sys.stderr):
        try:
            hypothesis = transcribe_file(model, utt.path, decoding=decoding, second_pass=second_pass,
                                         block_seconds=block_seconds).text
        except AudioError as error:
            log.error("%s", error)
            failed += 1
            continue
        references.append(utt.text)
        hypotheses.append(hypothesis)
        if jsonl is not None:
            scores = error_rates([utt.text], [hypothesis])
            jsonl.write(json.dumps({"id": utt.id, "path": utt.path, "reference": utt.text, "hypothesis": hypothesis,
                                    "wer": round(scores["wer"], 4), "cer": round(scores["cer"], 4)}) + "\n")
    result = error_rates(references, hypotheses)
    result["failed"] = failed
    return result
