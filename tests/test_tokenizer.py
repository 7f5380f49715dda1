from asr.tokenizer import BLANK, VOCAB, Tokenizer, normalize_text


def test_vocabulary():
    assert VOCAB[BLANK] == "<blank>" and len(VOCAB) == 29 and "'" in VOCAB and " " in VOCAB


def test_normalize_like_librispeech():
    assert normalize_text("Hello, World!  It's   café-time.") == "HELLO WORLD IT'S CAFE TIME"
    assert normalize_text("'Tis the dogs' bone") == "TIS THE DOGS BONE"
    assert normalize_text("Room 101") == "ROOM"
    assert normalize_text("  ") == ""


def test_encode_decode_round_trip():
    tok = Tokenizer()
    ids = tok.encode("don't stop")
    assert BLANK not in ids
    assert tok.decode(ids) == "DON'T STOP"
    assert tok.decode([BLANK] + ids + [BLANK]) == "DON'T STOP"
