"""The README's Python examples run and say what they claim (STYLE.md: docs that run)."""
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_examples_run_and_gradcheck_passes():
    blocks = _python_blocks()
    assert len(blocks) >= 2
    scope = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), scope)
    assert scope["res"].analytic.shape == (4,)      # the Lotka–Volterra θ = (α, β, δ, γ)
    assert scope["res"].ok, str(scope["res"])
    g = scope["g"]
    assert g.params.shape == (252,) and g.t.shape == (10,) and g.y0.shape == (2, 2)
    assert np.all(np.isfinite(g.params))


def test_readme_time_dependent_field_matches_its_closed_form():
    scope = {}
    for block in _python_blocks():
        exec(compile(block, str(README), "exec"), scope)
    assert scope["ys_forced"].shape == (7, 3, 2)
    np.testing.assert_allclose(scope["ys_forced"][-1], scope["exact"], rtol=1e-8)


def test_readme_per_row_args_match_the_closed_form():
    scope = {}
    for block in _python_blocks():
        exec(compile(block, str(README), "exec"), scope)
    k, t = scope["k"][:, 0], scope["t_k"]
    exact = np.exp(-k[None, :] * t[:, None])
    np.testing.assert_allclose(scope["ys_k"][:, :, 0], exact, rtol=100 * 1e-10, atol=0)


def test_readme_save_and_checkpoint_block_round_trips():
    scope = {}
    for block in _python_blocks():
        exec(compile(block, str(README), "exec"), scope)
    model, same, ck = scope["model"], scope["same"], scope["ck"]
    y = np.array([[0.3, -1.2], [2.0, 0.5]])
    np.testing.assert_array_equal(same(0.0, y), model(0.0, y))
    assert ck.step == 100 and ck.optimizer["kind"] == "Adam"
    assert ck.rng.random() == np.random.default_rng(0).random()
