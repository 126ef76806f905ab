"""Resume, interrupts and the best model of the training examples (issue 7).

A Ctrl-C is simulated by raising KeyboardInterrupt from the ``on_iteration`` callback of
``main`` (after a completed iteration) or from inside the training step (half-way through an
iteration, after the optimiser has already changed the parameters). Resuming must then give
the parameters of an uninterrupted run bit for bit: every source of state — the model, the
optimisers, the batch generator, the iteration count — is in the checkpoint.
"""
import importlib.util
import pathlib
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import pyode
from pyode import nn

ROOT = pathlib.Path(__file__).resolve().parents[1]
ITERS = 6          # 2N
HALF = 3           # N: not a multiple of --save-every, so the interrupt writes its own file

pytest.importorskip("matplotlib")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                  ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def spiral():
    return _load("spiral")


@pytest.fixture(scope="module")
def lynx_hare():
    return _load("lynx_hare")


def _stop_after(n):
    def on_iteration(it):
        if it == n:
            raise KeyboardInterrupt
    return on_iteration


def _interrupt(module, argv, capsys, **kwargs):
    with pytest.raises(SystemExit) as info:
        module.main(argv, **kwargs)
    assert info.value.code == 130
    return capsys.readouterr().err


SPIRAL_FLAGS = ["--seed", "1", "--test-freq", "2", "--save-every", "2"]
LYNX_FLAGS = ["--seed", "1", "--hidden", "16", "--save-every", "2"]


@pytest.fixture(scope="module")
def spiral_straight(spiral, tmp_path_factory):
    out = tmp_path_factory.mktemp("spiral_straight")
    result = spiral.main(["--iters", str(ITERS), "--out", str(out), *SPIRAL_FLAGS])
    return out, result


def _assert_same_training_state(ck_a, ck_b, optimizers):
    assert ck_a.step == ck_b.step == ITERS
    assert np.array_equal(ck_a.model.params, ck_b.model.params)
    for name in optimizers:
        a = ck_a.optimizer if name is None else ck_a.optimizer[name]
        b = ck_b.optimizer if name is None else ck_b.optimizer[name]
        assert a["n_steps"] == b["n_steps"] == ITERS
        assert np.array_equal(a["m"], b["m"]) and np.array_equal(a["v"], b["v"])


def test_spiral_interrupt_writes_checkpoint_and_figure_then_resume_is_exact(
        spiral, spiral_straight, tmp_path, capsys):
    straight_out, straight = spiral_straight
    out = tmp_path / "run"
    err = _interrupt(spiral, ["--iters", str(ITERS), "--out", str(out), *SPIRAL_FLAGS],
                     capsys, on_iteration=_stop_after(HALF))
    checkpoint = out / "spiral_checkpoint.npz"
    figure = out / "spiral.png"
    assert figure.is_file() and figure.stat().st_size > 10_000
    assert pyode.load_checkpoint(checkpoint).step == HALF
    message = [line for line in err.splitlines() if "interrupted" in line]
    assert len(message) == 1 and f"--resume {checkpoint}" in message[0]
    assert f"iteration {HALF} of {ITERS}" in message[0]
    assert "Traceback" not in err
    assert not (out / "spiral_final.npz").exists()

    resumed = spiral.main(["--resume", str(checkpoint)])      # settings from the checkpoint
    final = nn.load(out / "spiral_final.npz")
    assert np.array_equal(final.params, nn.load(straight_out / "spiral_final.npz").params)
    _assert_same_training_state(pyode.load_checkpoint(checkpoint),
                                pyode.load_checkpoint(straight_out / "spiral_checkpoint.npz"),
                                [None])
    assert resumed["final_loss"] == straight["final_loss"]
    assert (resumed["best_loss"], resumed["best_it"]) == \
        (straight["best_loss"], straight["best_it"])
    assert np.array_equal(ck_rng_draw(checkpoint), ck_rng_draw(straight_out /
                                                               "spiral_checkpoint.npz"))


def ck_rng_draw(path):
    return pyode.load_checkpoint(path).rng.random(4)


def test_spiral_interrupt_inside_an_iteration_rolls_back_to_the_last_completed(
        spiral, spiral_straight, tmp_path, capsys, monkeypatch):
    """KeyboardInterrupt after Adam changed params (and the batch was drawn) in iteration 5:
    the checkpoint must be that of iteration 4, and the resumed run still exact."""
    straight_out, _ = spiral_straight
    real_step = spiral.train_step
    calls = []

    def step_then_interrupt(*args):
        result = real_step(*args)
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(spiral, "train_step", step_then_interrupt)
    out = tmp_path / "run"
    _interrupt(spiral, ["--iters", str(ITERS), "--out", str(out), *SPIRAL_FLAGS], capsys)
    monkeypatch.undo()
    checkpoint = out / "spiral_checkpoint.npz"
    assert pyode.load_checkpoint(checkpoint).step == 4
    spiral.main(["--resume", str(checkpoint)])
    assert np.array_equal(nn.load(out / "spiral_final.npz").params,
                          nn.load(straight_out / "spiral_final.npz").params)


def test_spiral_best_model_reloads_to_the_logged_loss(spiral, spiral_straight, caplog):
    straight_out, result = spiral_straight
    best_path = straight_out / "spiral_best.npz"
    t, true_y = spiral.make_data()
    _, reloaded = spiral.full_loss(nn.load(best_path), t, true_y)
    assert reloaded == result["best_loss"]
    # what the log says, to all digits, and what a new process prints for the file
    with caplog.at_level("INFO"):
        spiral.main(["--iters", "2", "--test-freq", "1", "--seed", "1", "--out",
                     str(straight_out / "again")])
    logged = re.search(r"best full-trajectory loss (\S+) at iteration (\d+)", caplog.text)
    again_best = straight_out / "again" / "spiral_best.npz"
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "spiral.py"), "--evaluate",
                          str(again_best)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert float(res.stdout.strip()) == float(logged.group(1))


def test_spiral_resume_errors(spiral, tmp_path, capsys):
    model_file = tmp_path / "m.npz"
    nn.MLP([2, 3, 2]).save(model_file)
    with pytest.raises(pyode.SaveFormatError, match="read it with pyode.nn.load"):
        spiral.main(["--resume", str(model_file)])
    ck = tmp_path / "ck.npz"
    pyode.save_checkpoint(ck, step=1)
    with pytest.raises(pyode.SaveFormatError, match="not one of examples/spiral.py"):
        spiral.main(["--resume", str(ck)])


def test_lynx_hare_interrupt_and_resume_is_exact(lynx_hare, tmp_path, capsys):
    straight_out = tmp_path / "straight"
    straight = lynx_hare.main(["--iters", str(ITERS), "--out", str(straight_out),
                               *LYNX_FLAGS])
    out = tmp_path / "run"
    err = _interrupt(lynx_hare, ["--iters", str(ITERS), "--out", str(out), *LYNX_FLAGS],
                     capsys, on_iteration=_stop_after(HALF))
    checkpoint = out / "lynx_hare_checkpoint.npz"
    assert pyode.load_checkpoint(checkpoint).step == HALF
    assert (out / "lynx_hare.png").is_file() and "--resume" in err and "Traceback" not in err

    resumed = lynx_hare.main(["--resume", str(checkpoint)])
    a = pyode.load_checkpoint(checkpoint)
    b = pyode.load_checkpoint(straight_out / "lynx_hare_checkpoint.npz")
    _assert_same_training_state(a, b, ["f", "z0"])
    assert np.array_equal(a.extra["z0"], b.extra["z0"])
    assert resumed["final_loss"] == straight["final_loss"]
    assert resumed["best_loss"] == straight["best_loss"]

    # the best model (field and z0) reproduces the logged best loss
    years, counts, _ = lynx_hare.load_data()
    z = (counts - counts.mean(axis=0)) / counts.std(axis=0)
    f, z0 = lynx_hare.load_model(out / "lynx_hare_best.npz")
    assert lynx_hare.evaluate(f, z0, years - lynx_hare.YEAR0, z) == resumed["best_loss"]
    assert resumed["best_loss"] <= resumed["final_loss"]


def _train_lynx(lynx_hare, n_iters):
    """n_iters steps of the example's train_step at a constant lr of 3e-2, which reaches the
    contracting regime quickly (backsolve first warned at iteration 41 here; at the script's
    decaying 1e-2, after about 650)."""
    years, counts, _ = lynx_hare.load_data()
    t = years - lynx_hare.YEAR0
    z = (counts - counts.mean(axis=0)) / counts.std(axis=0)
    f = nn.MLP([2, 64, 2], activation="tanh", seed=0)
    z0 = z[0].copy()
    opt_f, opt_z0 = pyode.optim.Adam(f.params, lr=3e-2), pyode.optim.Adam(z0, lr=3e-2)
    for _ in range(n_iters):
        lynx_hare.train_step(f, z0, opt_f, opt_z0, t, z)


def test_lynx_hare_gradients_do_not_warn(lynx_hare, monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("error", pyode.AdjointReconstructionWarning)
        _train_lynx(lynx_hare, 60)
    # control: the same iterations with backsolve do warn, so the check above can fail
    real = lynx_hare.odeint_adjoint

    def backsolve(*args, **kwargs):
        return real(*args, **{**kwargs, "adjoint_method": "backsolve"})

    monkeypatch.setattr(lynx_hare, "odeint_adjoint", backsolve)
    with pytest.warns(pyode.AdjointReconstructionWarning):
        _train_lynx(lynx_hare, 60)
