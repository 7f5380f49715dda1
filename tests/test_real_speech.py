"""The real-speech dev suite's preparation: what is split by speaker, what a reference says."""
import numpy as np

from asr.audio import load_audio
from training.librispeech import Utterance
from training.real_speech import asterisk_words, joined_per_speaker, split_common_voice


def test_common_voice_is_split_by_speaker_not_by_clip():
    clips = [Utterance(f"{s}-1-{i:04d}", f"{s}_{i}.opus", 3.0, f"SENTENCE {s} {i}", str(s))
             for s in range(1000, 1200) for i in range(5)]
    parts = split_common_voice(clips)
    speakers = {name: {u.speaker for u in utts} for name, utts in parts.items()}
    assert speakers["dev"] and speakers["test"] and speakers["train"]
    assert not speakers["dev"] & speakers["test"] and not (speakers["dev"] | speakers["test"]) & speakers["train"]
    assert sum(map(len, parts.values())) == len(clips)
    assert {u.id for u in split_common_voice(clips[::-1])["dev"]} == {u.id for u in parts["dev"]}, "order-free"


def test_asterisk_references_say_what_the_prompt_says():
    # The prompts read their keys aloud: "Press 1" is heard as PRESS ONE, and a reference without it would count
    # every spoken digit as an insertion.
    assert asterisk_words("Please press 1 to mute or unmute yourself, 2 to lock, or 8 to exit.") == \
        "PLEASE PRESS ONE TO MUTE OR UNMUTE YOURSELF TWO TO LOCK OR EIGHT TO EXIT"
    assert asterisk_words("Press 9.") == "PRESS NINE"
    # notes in parentheses are not spoken; a silence prompt says nothing and leaves the suite
    assert asterisk_words("Please leave your message after the tone. (simple tone sound plays)") == \
        "PLEASE LEAVE YOUR MESSAGE AFTER THE TONE"
    assert asterisk_words("(10 seconds of silence)") == ""
    # numbers whose reading is unsure leave the suite rather than guess
    for text in ("H.323", "3D audio enabled", "connected at 28.8", "the password is 1234"):
        assert asterisk_words(text) == "", text


def test_long_parts_join_each_speakers_recordings_end_to_end(speech_dir, tmp_path):
    names = sorted(p.stem for p in speech_dir.glob("*.wav"))
    utterances = [Utterance(f"{s}-2-{i:04d}", str(speech_dir / f"{name}.wav"), 0.0, name.upper(), str(s))
                  for s in (7, 8) for i, name in enumerate(names)]
    joined = joined_per_speaker(utterances[::-1], tmp_path / "long")
    assert [u.speaker for u in joined] == ["7", "8"]
    assert joined[0].text == " ".join(name.upper() for name in names)
    expected = np.concatenate([load_audio(speech_dir / f"{name}.wav") for name in names])
    np.testing.assert_allclose(load_audio(joined[0].path), expected, atol=1 / 32768)
    assert joined_per_speaker(utterances, tmp_path / "long") == joined, "written once, the same again"
