"""Resume, interrupts and the best model of the training examples (issue 7).

A Ctrl-C is simulated by raising KeyboardInterrupt from the ``on_iteration`` callback of
``main`` (after a completed iteration) or from inside the training step (half-way through an
iteration, after the optimiser has already changed the parameters). Resuming must then give
the parameters of an uninterrupted run bit for bit: every source of state — the model, the
optimisers, the batch generator, the iteration count — is in the checkpoint.
"""
import importlib.util
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import pyode
from pyode import nn, serialization

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
    """A file of the wrong kind: one line naming the option and what it takes, status 2 (the
    CLI names its own options, not library functions)."""
    model_file = tmp_path / "m.npz"
    nn.MLP([2, 3, 2]).save(model_file)
    assert _exit_code(spiral, ["--resume", str(model_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{PROG}: error: argument --resume: {model_file}: a pyode model file")
    assert "spiral_checkpoint.npz" in err and "for --evaluate" in err
    assert "pyode.nn.load" not in err and len(err.splitlines()) == 1
    ck = tmp_path / "ck.npz"
    pyode.save_checkpoint(ck, step=1)
    assert _exit_code(spiral, ["--resume", str(ck)]) == 2
    assert "not one of examples/spiral.py" in capsys.readouterr().err


# -- issue: resume into another directory, signals, the handler's own failures ----------------

PROG = pathlib.Path(sys.argv[0]).name     # what argparse and the scripts call themselves
NAMES = {"spiral": "spiral", "lynx_hare": "lynx_hare"}
FLAGS = {"spiral": SPIRAL_FLAGS, "lynx_hare": LYNX_FLAGS}


@pytest.fixture(params=["spiral", "lynx_hare"])
def script(request):
    return request.param, request.getfixturevalue(request.param)


def _exit_code(module, argv, **kwargs):
    """``main(argv)`` must end with SystemExit; its code. A KeyboardInterrupt that escapes (a
    signal that reached Python's default handler) fails the test instead of ending pytest."""
    try:
        module.main(argv, **kwargs)
    except SystemExit as exc:
        return exc.code
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main(): the interrupt was not handled")
    pytest.fail("main() returned: the run was not stopped")


def _one_message(err, name):
    lines = [line for line in err.splitlines() if line.startswith(f"{name}: interrupted")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def test_resume_into_another_directory_carries_the_best_model(script, tmp_path, caplog):
    """Resumed into a new --out, with no new best after the resume (here: no iterations
    left), the best model reported must exist there and be the one of the first part."""
    name, module = script
    first = module.main(["--iters", "2", "--out", str(tmp_path / "a"), "--save-every", "1",
                         *FLAGS[name]])
    checkpoint = tmp_path / "a" / f"{name}_checkpoint.npz"
    with caplog.at_level("WARNING"):
        resumed = module.main(["--resume", str(checkpoint), "--out", str(tmp_path / "b"),
                               "--seed", "1"])              # the checkpoint's own seed
    assert "--seed 1 is ignored with --resume" in caplog.text
    best = tmp_path / "b" / f"{name}_best.npz"
    assert resumed["best"] == best and best.is_file()
    assert best.read_bytes() == first["best"].read_bytes()
    assert resumed["best_loss"] == first["best_loss"]

    # The best file left behind: warn, and the file reported still exists.
    first["best"].unlink()
    caplog.clear()
    with caplog.at_level("WARNING"):
        again = module.main(["--resume", str(checkpoint), "--out", str(tmp_path / "c")])
    assert "does not exist" in caplog.text
    assert again["best"].is_file()


def test_swallowed_ctrl_c_still_stops_after_the_iteration(script, tmp_path, capsys,
                                                          monkeypatch):
    """Ctrl-C while Numba's compiler runs a ctypes callback: the KeyboardInterrupt is printed
    and swallowed there. The run must still stop after that iteration, the usual way."""
    name, module = script
    real_step = module.train_step
    calls = []

    def step_with_swallowed_interrupt(*args):
        result = real_step(*args)
        calls.append(1)
        if len(calls) == 2:
            try:                        # what the ctypes callback does with the exception
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            except KeyboardInterrupt:
                pass
        return result

    monkeypatch.setattr(module, "train_step", step_with_swallowed_interrupt)
    out = tmp_path / "run"
    assert _exit_code(module, ["--iters", str(ITERS), "--out", str(out), *FLAGS[name]]) == 130
    message = _one_message(capsys.readouterr().err, name)
    assert f"interrupted (Ctrl-C) after iteration 2 of {ITERS}" in message
    assert pyode.load_checkpoint(out / f"{name}_checkpoint.npz").step == 2
    assert (out / f"{name}.png").is_file()


def test_os_kill_sigint_writes_checkpoint_and_figure(spiral, tmp_path, capsys):
    def kill_at_half(it):
        if it == HALF:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)               # the handler raises out of this sleep

    out = tmp_path / "run"
    assert _exit_code(spiral, ["--iters", str(ITERS), "--out", str(out), *SPIRAL_FLAGS],
                      on_iteration=kill_at_half) == 130
    message = _one_message(capsys.readouterr().err, "spiral")
    assert f"after iteration {HALF} of {ITERS}" in message
    assert pyode.load_checkpoint(out / "spiral_checkpoint.npz").step == HALF


def test_second_ctrl_c_during_the_handlers_save_is_deferred(spiral, tmp_path, capsys,
                                                            monkeypatch):
    """A second Ctrl-C while the first one's checkpoint is written (inside numpy.savez /
    os.fsync) must not lose the checkpoint or the figure."""
    real_writer = serialization._write_npz
    armed = []

    def writer_hit_by_ctrl_c(fh, arrays):
        if armed:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)            # the handler runs here: it must not raise
        real_writer(fh, arrays)

    def stop_at_half(it):
        if it == HALF:
            armed.append(1)
            raise KeyboardInterrupt

    monkeypatch.setattr(serialization, "_write_npz", writer_hit_by_ctrl_c)
    out = tmp_path / "run"
    assert _exit_code(spiral, ["--iters", str(ITERS), "--out", str(out), *SPIRAL_FLAGS],
                      on_iteration=stop_at_half) == 130
    _one_message(capsys.readouterr().err, "spiral")
    assert pyode.load_checkpoint(out / "spiral_checkpoint.npz").step == HALF
    assert (out / "spiral.png").stat().st_size > 10_000


def test_interrupt_before_any_iteration_completed(script, tmp_path, capsys, monkeypatch):
    """Ctrl-C in the first iteration (while numba still imports): say so, write nothing."""
    name, module = script

    def interrupted_step(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "train_step", interrupted_step)
    out = tmp_path / "run"
    assert _exit_code(module, ["--iters", str(ITERS), "--out", str(out), *FLAGS[name]]) == 130
    message = _one_message(capsys.readouterr().err, name)
    assert "before any iteration completed" in message and "no checkpoint written" in message
    assert not (out / f"{name}_checkpoint.npz").exists()


def test_figure_that_fails_after_an_interrupt_is_reported(script, tmp_path, capsys,
                                                          monkeypatch):
    """The checkpoint (pure NumPy) is written first; a figure that cannot be drawn (numba left
    half-imported by the Ctrl-C) is named in the one-line message; status still 130."""
    name, module = script

    def broken_plot(*args, **kwargs):
        raise AttributeError("module 'numba' has no attribute 'core'")

    monkeypatch.setattr(module, "plot", broken_plot)
    out = tmp_path / "run"
    assert _exit_code(module, ["--iters", str(ITERS), "--out", str(out), *FLAGS[name]],
                      on_iteration=_stop_after(HALF)) == 130
    message = _one_message(capsys.readouterr().err, name)
    assert f"could not write the figure {out / f'{name}.png'}" in message
    assert "AttributeError: module 'numba' has no attribute 'core'" in message
    assert f"--resume {out / f'{name}_checkpoint.npz'}" in message
    assert pyode.load_checkpoint(out / f"{name}_checkpoint.npz").step == HALF


def test_sigterm_stops_a_real_run_like_ctrl_c(tmp_path):
    """End to end in a new process: SIGTERM (timeout, Slurm) writes the checkpoint and the
    figure, prints one line and exits with status 130."""
    out = tmp_path / "run"
    checkpoint = out / "spiral_checkpoint.npz"
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "spiral.py"), "--iters",
                             "100000", "--save-every", "1", "--test-freq", "100000", "--out",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 240
        while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    message = _one_message(err, "spiral")
    assert "interrupted (SIGTERM) after iteration" in message
    assert pyode.load_checkpoint(checkpoint).step >= 1
    assert (out / "spiral.png").is_file()


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
