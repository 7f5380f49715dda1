"""Decoding tuning on dev parts: every setting scored on every part, ranked by the parts' mean."""
from __future__ import annotations

import json

import pytest

from training import dev_suite, tune_decoding
from tests.helpers import suite_wers, write_part


def test_every_setting_is_scored_on_every_part_and_ranked_by_the_mean(speech_dir, tmp_path, capsys):
    a = write_part(tmp_path / "dev" / "a", speech_dir, ["hello", "weather"])
    b = write_part(tmp_path / "dev" / "b", speech_dir, ["numbers"])
    out = tmp_path / "tuning.json"
    assert tune_decoding.main(["--model", "stream", "--dev", str(a), str(b), "--lm-weights", "0.5", "1.5",
                               "--word-scores", "0", "--beam-sizes", "8", "--json", str(out), "--threads", "1"]) == 0
    table = capsys.readouterr().out.splitlines()
    rows = json.loads(out.read_text())
    assert [row["lm_weight"] for row in rows] == [None, 0.5, 1.5]     # greedy first, then each setting
    for row in rows:
        assert set(row["wer"]) == {"a", "b"}
        assert row["mean_wer"] == pytest.approx((row["wer"]["a"] + row["wer"]["b"]) / 2)
    # the table lists the settings from the best mean down
    means = [float(line.strip("|").split("|")[-1].strip().rstrip("%")) for line in table[2:]]
    assert len(means) == 3 and means == sorted(means)
    # greedy is what the dev suite gives the same model on the same part
    assert dev_suite.main(["--suite", str(tmp_path), "--split", "dev", "--models", "stream", "--lm", "none"]) == 0
    assert suite_wers(capsys.readouterr().out)["dev/a"] == pytest.approx(100 * rows[0]["wer"]["a"], abs=0.05)
