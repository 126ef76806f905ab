"""``pyode.progress``: log lines off a terminal, a tqdm bar when asked, a clear error without it."""
import io
import logging

import pytest

from pyode import progress as progress_module
from pyode.progress import progress


def test_log_lines_off_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="pyode")
    stream = io.StringIO()                               # not a terminal: no bar
    with progress(10, desc="train", initial=2, log_every=4, stream=stream) as counter:
        assert not counter.bar
        for _ in range(8):
            counter.update(1, loss=0.125)
    lines = [r.getMessage() for r in caplog.records if r.name == "pyode"]
    assert [line.split(" [")[0] for line in lines] == ["train: 4/10", "train: 8/10",
                                                       "train: 10/10"]
    assert lines[-1].endswith("loss=0.125")
    assert stream.getvalue() == ""


def test_bar_draws_on_the_stream_and_writes_above_it():
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    with progress(3, desc="bar", stream=stream, bar=True) as counter:
        assert counter.bar
        counter.update(1)
        counter.write("a message")
        counter.update(2)
    text = stream.getvalue()
    assert "a message\n" in text and "3/3" in text


def test_forcing_a_bar_without_tqdm_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(progress_module, "_tqdm_class", lambda: None)
    with pytest.raises(ImportError, match=r"pyode\[progress\]"):
        progress(3, bar=True)
    assert not progress(3).bar                             # the default falls back to lines
