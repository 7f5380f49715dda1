"""Length-bucketed batches and their split across DDP ranks (training.data.bucket_batches)."""
import random

import pytest

from training.data import bucket_batches


def durations(n=203, seed=0):
    rng = random.Random(seed)
    return [rng.uniform(0.5, 16.0) for _ in range(n)]


def test_batches_stay_under_the_padded_budget_and_cover_every_utterance():
    lengths = durations()
    batches = bucket_batches(lengths, 40.0, seed=1, epoch=0)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 40.0


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_get_disjoint_equal_shares_in_the_same_order_every_time(world_size):
    lengths = durations()
    whole = bucket_batches(lengths, 40.0, seed=1, epoch=3)
    shares = [bucket_batches(lengths, 40.0, seed=1, epoch=3, rank=r, world_size=world_size) for r in range(world_size)]
    assert len({len(share) for share in shares}) == 1  # every rank takes the same number of steps
    assert len(shares[0]) == len(whole) // world_size
    seen = [tuple(batch) for share in shares for batch in share]
    assert len(seen) == len(set(seen)) and set(seen) <= {tuple(batch) for batch in whole}
    assert shares[1] == bucket_batches(lengths, 40.0, seed=1, epoch=3, rank=1, world_size=world_size)


def test_epochs_shuffle_the_batch_order():
    lengths = durations()
    first, second = bucket_batches(lengths, 40.0, seed=1, epoch=0), bucket_batches(lengths, 40.0, seed=1, epoch=1)
    assert len(first) > 5 and first != second


def test_joined_examples_keep_one_speaker_and_subset_and_every_utterance_once():
    from training.data import join_by_speaker
    from training.librispeech import Utterance

    rng = random.Random(1)
    utterances = [Utterance(f"{s}-1-{i:04d}", f"/data/{subset}/{s}/1/{s}-1-{i:04d}.flac", rng.uniform(1.0, 12.0),
                            "WORDS", str(s)) for subset in ("train", "train-aug1") for s in range(10) for i in range(9)]
    examples = join_by_speaker(utterances, join=3, max_seconds=20.0, seed=5)
    assert sorted(i for example in examples for i in example) == list(range(len(utterances)))
    sizes = [len(example) for example in examples]
    assert max(sizes) == 3 and min(sizes) == 1 and len(set(sizes)) == 3
    for example in examples:
        assert len({(utterances[i].speaker, utterances[i].path.split("/")[2]) for i in example}) == 1
        assert len(example) == 1 or sum(utterances[i].duration for i in example) <= 20.0
    assert join_by_speaker(utterances, join=3, max_seconds=20.0, seed=5) == examples, "the same for a resumed run"
    assert join_by_speaker(utterances, join=1, max_seconds=20.0, seed=5) == [(i,) for i in range(len(utterances))]


def test_trimmed_onsets_start_within_100_ms_of_the_first_sound_and_keep_room_for_the_labels():
    import numpy as np
    import torch

    from asr.features import log_mel
    from training.data import trim_onsets

    rng = np.random.default_rng(0)
    silence = rng.normal(0, 1e-4, 8000)  # 0.5 s of a quiet room, then 1 s of a vowel-like tone
    t = np.arange(16000) / 16000
    sound = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    whole = log_mel(np.concatenate([silence, sound, silence[:1600]]).astype(np.float32))
    onset = int(torch.argmax((torch.logsumexp(whole, -1) > torch.logsumexp(whole, -1).max() - 6.9).int()))
    assert 45 <= onset <= 52
    features = torch.stack([whole] * 8)  # (8, frames, 80)
    lengths = torch.full((8,), len(whole))
    labels = (torch.arange(60) % 27 + 1).repeat(8, 1)  # no repeats: n labels need n output frames
    label_lengths = torch.tensor([3] * 7 + [45])  # 45 fit the 158 frames / 3 stacked, not what trimming would leave
    assert len(whole) == 158

    trimmed = trim_onsets(features, lengths, labels, label_lengths, 3, torch.Generator().manual_seed(1), 1.0)
    assert trimmed[7] == len(whole) and torch.equal(features[7], whole), "an example that would not fit stays whole"
    cut = len(whole) - trimmed[:7]
    assert all(onset - 10 <= c <= onset for c in cut) and len(set(cut.tolist())) > 1
    for b in range(7):
        assert torch.equal(features[b, : trimmed[b]], whole[int(cut[b]):])
        assert not features[b, trimmed[b]:].any()
    assert torch.equal(trim_onsets(torch.stack([whole] * 8), lengths, labels, label_lengths, 3,
                                   torch.Generator().manual_seed(1), 0.0), lengths)


def test_vocal_tract_length_perturbation_moves_a_tone_by_each_items_factor_and_keeps_the_band():
    import numpy as np
    import torch

    from asr.features import log_mel, mel_centres, mel_filters
    from training.data import warp_frequencies

    t = np.arange(16000) / 16000
    tones = torch.stack([log_mel((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)) for hz in (1000, 7600)])
    features = torch.cat([tones[:1]] * 6 + [tones[1:]] * 2)  # (8, frames, 80): six of 1 kHz, two near the top
    alphas = 1 + (torch.rand(8, generator=torch.Generator().manual_seed(3)) * 2 - 1) * 0.1
    warped = warp_frequencies(features, torch.Generator().manual_seed(3), 0.1)
    assert warped.shape == features.shape and len(set(alphas.tolist())) == 8
    centres = mel_centres()
    hz_per_bin = 16000 / (mel_filters().shape[1] - 1) / 2
    assert ((mel_filters().argmax(dim=1) * hz_per_bin - centres).abs() <= hz_per_bin / 2).all(), "the filters' peaks"
    peaks = centres[warped[:, 50].argmax(dim=-1)]
    for b in range(6):  # the tone's bin moves to alpha * 1 kHz, to within the bins' spacing there (about 60 Hz)
        assert abs(float(peaks[b]) - 1000 * float(alphas[b])) < 70
    assert len(set(peaks[:6].tolist())) > 2
    assert all(abs(float(p) - 7600) < 200 for p in peaks[6:]), "the band's top stays put"
    assert torch.equal(warp_frequencies(features, torch.Generator().manual_seed(3), 0.0), features)
