"""The dev suite's table: every part for every model, the dev parts alone when choosing, each split's mean."""
from __future__ import annotations

import pytest

from training import dev_suite
from tests.helpers import suite_wers, write_part


def _suite(speech_dir, root):
    """dev/a and dev/b of one utterance each, test/c of one."""
    for part, name in (("dev/a", "hello"), ("dev/b", "weather"), ("test/c", "numbers")):
        write_part(root / part, speech_dir, [name])
    return root


def test_dev_split_leaves_the_test_parts_out_and_ends_with_each_splits_mean(speech_dir, tmp_path, capsys):
    suite = _suite(speech_dir, tmp_path / "suite")
    assert dev_suite.main(["--suite", str(suite), "--models", "stream", "--lm", "none"]) == 0
    both = suite_wers(capsys.readouterr().out)
    assert list(both) == ["dev/a", "dev/b", "test/c", "dev mean of 2 parts", "test mean of 1 part"]
    # each part counts the same, whatever its number of words
    assert both["dev mean of 2 parts"] == pytest.approx((both["dev/a"] + both["dev/b"]) / 2, abs=0.1)
    assert both["test mean of 1 part"] == both["test/c"]

    assert dev_suite.main(["--suite", str(suite), "--split", "dev", "--models", "stream", "--lm", "none"]) == 0
    dev = suite_wers(capsys.readouterr().out)
    assert dev == {part: both[part] for part in ("dev/a", "dev/b", "dev mean of 2 parts")}
