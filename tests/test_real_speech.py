"""The real-speech dev suite's preparation: what is split by speaker, what a reference says."""
from training.librispeech import Utterance
from training.real_speech import asterisk_words, split_common_voice


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
