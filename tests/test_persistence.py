"""Copies, save/load, optimiser states and checkpoints (issue 7).

Copies: after copy.copy, copy.deepcopy and a pickle round trip, and after changing the
parameters of the copy (``g.params = new`` and ``g.params[:] = new``), the direct call, the
NumPy path and the Numba path must compute the same field, and the original must not change.
The paths agree to the documented 1e-10 (float64 states; README "Backends"); a copy whose
layers lost their views into ``params`` differs by O(1).

Files: loaded fields compute bit-identically; optimiser states continue bit-identically; the
write is atomic; every foreign or newer file raises SaveFormatError naming the file.
"""
import copy
import errno
import json
import os
import pickle
import re

import numpy as np
import pytest

import pyode
from pyode import nn, odeint, optim, serialization
from pyode.errors import SaveFormatError

PATH_RTOL = 1e-10          # NumPy path vs Numba kernels (float64 states), README "Backends"


def _fields():
    """Fields covering every layer kind, TimeInput and a non-default ELU α."""
    return {
        "tanh-cube": lambda dt, be: nn.MLP([2, 7, 2], activation="tanh",
                                           input_activation="cube", seed=1, dtype=dt,
                                           backend=be),
        "softplus-time": lambda dt, be: nn.MLP([2, 6, 5, 2], activation="softplus",
                                               time_input=True, seed=2, dtype=dt, backend=be),
        "elu-alpha": lambda dt, be: nn.MLP([2, 6, 2], activation=nn.ELU(alpha=0.37),
                                           input_activation="sin", seed=3, dtype=dt,
                                           backend=be),
        "sequential-mixed": lambda dt, be: nn.Sequential(
            nn.Sigmoid(), nn.TimeInput(), nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 4),
            nn.Identity(), nn.Linear(4, 2), seed=4, dtype=dt, backend=be),
    }


FIELDS = _fields()
DTYPES = [np.float64, np.float32]
COPIERS = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda f: pickle.loads(pickle.dumps(f)),
}

Y0 = np.array([[0.6, -0.4], [-0.3, 0.8]])
T = np.linspace(0.0, 0.7, 4)
Y_PROBE = np.array([[0.5, -1.0], [1.5, 0.25], [-0.75, 0.1]])
T_PROBE = np.array([0.1, 0.4, 0.9])


def _describe(f):
    return serialization._describe_model(f)


def _assert_views_bound(f):
    for layer in f.layers:
        if isinstance(layer, nn.Linear):
            assert np.shares_memory(layer.W, f.params) and np.shares_memory(layer.b, f.params)


def _assert_paths_agree(f):
    """Direct call equals a freshly built reference; Numba and NumPy solves agree."""
    numba = odeint(f, Y0, T, backend="numba")
    numpy = odeint(f, Y0, T, backend="numpy")
    np.testing.assert_allclose(numba, numpy, rtol=PATH_RTOL, atol=PATH_RTOL)
    return numba


# -- copies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["assign", "slice"])
@pytest.mark.parametrize("copier", sorted(COPIERS))
@pytest.mark.parametrize("backend", nn.BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", sorted(FIELDS))
def test_copy_changes_params_and_paths_agree(name, dtype, backend, copier, how):
    f = FIELDS[name](dtype, backend)
    before_params = f.params.copy()
    before_call = f(T_PROBE, Y_PROBE)
    before_solve = odeint(f, Y0, T, backend="numpy")

    g = COPIERS[copier](f)
    assert type(g) is type(f) and g.dtype == f.dtype and g.backend == backend
    assert _describe(g) == _describe(f)
    assert not np.shares_memory(g.params, f.params)
    _assert_views_bound(g)
    assert np.array_equal(g(T_PROBE, Y_PROBE), before_call)

    new = g.params * 0.5 + np.linspace(-0.3, 0.3, g.n_params)
    array_before = g.params
    if how == "assign":
        g.params = new
    else:
        g.params[:] = new
    assert g.params is array_before                  # both ways copy into the same array
    np.testing.assert_array_equal(g.params, new.astype(dtype))

    reference = FIELDS[name](dtype, backend)         # built fresh: views are right by design
    reference.params = new
    np.testing.assert_array_equal(g(T_PROBE, Y_PROBE), reference(T_PROBE, Y_PROBE))
    solved = _assert_paths_agree(g)
    np.testing.assert_allclose(solved, odeint(reference, Y0, T, backend="numpy"),
                               rtol=PATH_RTOL, atol=PATH_RTOL)
    assert not np.allclose(solved, before_solve, rtol=1e-3)   # the change is visible

    np.testing.assert_array_equal(f.params, before_params)   # the original is untouched
    np.testing.assert_array_equal(f(T_PROBE, Y_PROBE), before_call)
    np.testing.assert_array_equal(odeint(f, Y0, T, backend="numpy"), before_solve)
    _assert_views_bound(f)


def test_copy_of_a_copy_and_copies_inside_containers():
    f = FIELDS["tanh-cube"](np.float64, "numba")
    g = copy.deepcopy(copy.copy(pickle.loads(pickle.dumps(f))))
    box = copy.deepcopy({"best": g, "again": g})
    assert box["best"] is box["again"]               # deepcopy's memo keeps identity
    _assert_views_bound(box["best"])
    box["best"].params[:] = 0.0
    assert np.all(box["best"](0.0, Y_PROBE) == 0.0)  # all-zero weights and biases give 0
    assert np.any(g(0.0, Y_PROBE) != 0.0)


def test_shallow_copy_shares_no_linear_layer():
    f = FIELDS["softplus-time"](np.float64, "numba")
    g = copy.copy(f)
    f_lin = [layer for layer in f.layers if isinstance(layer, nn.Linear)]
    g_lin = [layer for layer in g.layers if isinstance(layer, nn.Linear)]
    assert len(g_lin) == len(f_lin) == 3
    assert all(a is not b for a, b in zip(f_lin, g_lin))
    assert [layer.offset for layer in g_lin] == [layer.offset for layer in f_lin]
    assert g.sizes == f.sizes and g.time_input and g.activation == "softplus"


@pytest.mark.parametrize("copier", sorted(COPIERS))
def test_copied_linear_on_its_own_is_detached(copier):
    f = FIELDS["tanh-cube"](np.float64, "numba")
    layer = f.layers[1]
    x = np.array([[0.3, -0.2], [1.0, 0.5]])
    expected = layer.forward(x)
    lone = COPIERS[copier](layer)
    assert lone.offset is None
    assert not np.shares_memory(lone.W, f.params) and not np.shares_memory(lone.b, f.params)
    np.testing.assert_array_equal(lone.forward(x), expected)
    lone.W[...] = 0.0
    np.testing.assert_array_equal(layer.forward(x), expected)    # original untouched
    np.testing.assert_array_equal(lone.forward(x), np.broadcast_to(lone.b, expected.shape))
    g = nn.Sequential(lone, nn.Tanh(), nn.Linear(7, 2), seed=5)  # can join a new field
    _assert_views_bound(g)
    assert lone.offset == 0


def test_params_assignment_checks_shape():
    f = FIELDS["tanh-cube"](np.float64, "numba")
    with pytest.raises(ValueError, match=r"params must have shape \(37,\); got shape \(3,\)"):
        f.params = np.zeros(3)


def test_unpickles_a_field_pickled_without_rebinding():
    """A pickle of the old layout (bound Linears with their own stale W/b) loads correctly."""
    f = FIELDS["tanh-cube"](np.float64, "numba")
    state = f.__dict__.copy()        # what the default pickling stored before the fix
    legacy = object.__new__(nn.MLP)
    legacy.__setstate__(copy.deepcopy(state))
    _assert_views_bound(legacy)
    np.testing.assert_array_equal(legacy(T_PROBE, Y_PROBE), f(T_PROBE, Y_PROBE))


# -- save / load of a model -------------------------------------------------------------------


@pytest.mark.parametrize("backend", nn.BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", sorted(FIELDS))
def test_save_load_model_is_bit_identical(name, dtype, backend, tmp_path):
    f = FIELDS[name](dtype, backend)
    f.params = f.params * 1.25 - 0.01        # not the seed's values: they must come from file
    path = tmp_path / "model.bin"
    f.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.bin"]     # exactly the path, no .npz added
    g = nn.load(path)
    assert type(g) is type(f) and g.dtype == np.dtype(dtype) and g.backend == backend
    assert _describe(g) == _describe(f)
    assert g.params.dtype == f.params.dtype
    assert np.array_equal(g.params, f.params)
    _assert_views_bound(g)
    y = Y_PROBE.astype(dtype)
    assert np.array_equal(g(T_PROBE, y), f(T_PROBE, y))
    assert np.array_equal(odeint(g, Y0, T), odeint(f, Y0, T))
    if isinstance(f, nn.MLP):
        assert (g.sizes, g.activation, g.input_activation, g.time_input) == \
               (f.sizes, f.activation, f.input_activation, f.time_input)


def test_saved_file_is_plain_npz_without_pickle(tmp_path):
    f = FIELDS["elu-alpha"](np.float64, "numpy")
    path = str(tmp_path / "m.npz")
    f.save(path)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["__pyode__", "model.params"]
        meta = json.loads(str(data["__pyode__"][()]))
        assert np.array_equal(data["model.params"], f.params)
    assert meta["format"] == "pyode.model" and meta["format_version"] == 1
    assert meta["pyode_version"] == pyode.__version__
    model = meta["model"]
    assert model["class"] == "MLP" and model["dtype"] == "float64"
    assert model["backend"] == "numpy" and model["seed"] == 3
    assert model["args"]["activation"] == {"kind": "elu", "alpha": 0.37}
    assert model["layers"][0] == {"kind": "sin"}


def test_save_refuses_what_it_cannot_describe(tmp_path):
    class Scaled(nn.Activation):
        name = "scaled"

        def forward(self, x, t=None):
            return 2 * x

        def derivative(self, x):
            return np.full_like(x, 2.0)

    f = nn.Sequential(nn.Linear(2, 2), Scaled(), backend="numpy")
    with pytest.raises(TypeError, match=r"layers\[1\] is .*Scaled"):
        f.save(tmp_path / "x.npz")

    class MyMLP(nn.MLP):
        pass

    with pytest.raises(TypeError, match="MyMLP"):
        MyMLP([2, 3, 2]).save(tmp_path / "y.npz")
    assert os.listdir(tmp_path) == []


# -- optimiser states -------------------------------------------------------------------------


def _grad(theta, k):
    """A deterministic, step-dependent gradient."""
    return np.sin(3.0 * theta + 0.1 * k) + 0.05 * theta


OPTIMIZERS = {
    "SGD": lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
    "Adam": lambda p: optim.Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-7),
    "RMSprop": lambda p: optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-6),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_optimizer_resume_continues_bit_identically(kind, dtype, tmp_path):
    k = 5
    straight = FIELDS["tanh-cube"](dtype, "numba")
    opt = OPTIMIZERS[kind](straight.params)
    for step in range(2 * k):
        opt.lr = 0.03 / (1 + step)                 # a schedule: lr must be restored too
        opt.step(_grad(straight.params, step))

    first = FIELDS["tanh-cube"](dtype, "numba")
    opt1 = OPTIMIZERS[kind](first.params)
    for step in range(k):
        opt1.lr = 0.03 / (1 + step)
        opt1.step(_grad(first.params, step))
    path = tmp_path / "ck.npz"
    pyode.save_checkpoint(path, model=first, optimizer=opt1, step=k)

    ck = pyode.load_checkpoint(path)
    assert ck.step == k and ck.optimizer["kind"] == kind and ck.optimizer["n_steps"] == k
    assert ck.optimizer["lr"] == opt1.lr
    model = ck.model
    opt2 = getattr(optim, kind)(model.params, lr=1.0)   # other hyper-parameters: loaded
    opt2.load_state_dict(ck.optimizer)
    assert opt2.params is model.params
    for step in range(k, 2 * k):
        opt2.lr = 0.03 / (1 + step)
        opt2.step(_grad(model.params, step))
    assert model.params.dtype == np.dtype(dtype)
    assert np.array_equal(model.params, straight.params)
    for name in opt._BUFFERS:
        assert np.array_equal(getattr(opt2, name), getattr(opt, name))
    assert opt2.n_steps == opt.n_steps == 2 * k


def test_state_dict_is_a_snapshot_of_plain_values():
    p = np.zeros(4)
    opt = optim.Adam(p, lr=0.1)
    opt.step(np.ones(4))
    state = opt.state_dict()
    assert set(state) == {"kind", "lr", "n_steps", "beta1", "beta2", "eps", "m", "v"}
    assert all(isinstance(state[key], (str, int, float)) for key in
               ("kind", "lr", "n_steps", "beta1", "beta2", "eps"))
    m_before = state["m"].copy()
    opt.step(np.ones(4))
    assert np.array_equal(state["m"], m_before)    # a copy, not the live buffer


def test_load_state_dict_errors_name_the_problem():
    adam = optim.Adam(np.zeros(3)).state_dict()
    with pytest.raises(ValueError, match=r"'Adam' but this optimiser is optim.SGD: build an "
                                         r"optim.Adam\(params\)"):
        optim.SGD(np.zeros(3), lr=0.1).load_state_dict(adam)
    with pytest.raises(ValueError, match=r"state\['m'\] has shape \(3,\) but params has "
                                         r"shape \(5,\)"):
        optim.Adam(np.zeros(5)).load_state_dict(adam)
    broken = dict(adam)
    del broken["v"]
    with pytest.raises(ValueError, match=r"missing \['v'\]"):
        optim.Adam(np.zeros(3)).load_state_dict(broken)
    with pytest.raises(ValueError, match=r"state\['beta1'\] must be finite"):
        optim.Adam(np.zeros(3)).load_state_dict({**adam, "beta1": 1.5})
    with pytest.raises(TypeError, match="state must be a dict"):
        optim.Adam(np.zeros(3)).load_state_dict([("kind", "Adam")])
    target = optim.Adam(np.zeros(3), lr=0.5)
    with pytest.raises(ValueError):
        target.load_state_dict({**adam, "n_steps": -1})
    assert target.lr == 0.5                        # nothing changed by a failed load


# -- checkpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937,
                                           np.random.Philox])
def test_checkpoint_restores_rng_and_extra(bit_generator, tmp_path):
    rng = np.random.Generator(bit_generator(42))
    rng.normal(size=7)
    extra = {"z0": np.array([0.25, -1.5]), "best": float("inf"), "iters": 12, "tag": "run-1",
             "flag": True, "int32": np.arange(6, dtype=np.int32).reshape(2, 3),
             "f32": np.float32(0.1), "none": None}
    path = tmp_path / "ck.npz"
    pyode.save_checkpoint(path, rng=rng, extra=extra, step=0)
    ck = pyode.load_checkpoint(path)
    assert ck.model is None and ck.optimizer is None and ck.step == 0
    assert np.array_equal(ck.rng.normal(size=5), rng.normal(size=5))
    assert ck.rng.choice(1000, size=20, replace=False).tolist() == \
        rng.choice(1000, size=20, replace=False).tolist()
    assert set(ck.extra) == set(extra)
    assert ck.extra["z0"].dtype == np.float64 and np.array_equal(ck.extra["z0"], extra["z0"])
    assert ck.extra["int32"].dtype == np.int32 and ck.extra["int32"].shape == (2, 3)
    assert ck.extra["best"] == float("inf") and ck.extra["iters"] == 12
    assert ck.extra["tag"] == "run-1" and ck.extra["flag"] is True and ck.extra["none"] is None
    assert ck.extra["f32"] == float(np.float32(0.1))


def test_checkpoint_with_named_optimizers(tmp_path):
    f = FIELDS["tanh-cube"](np.float64, "numba")
    z0 = np.array([0.1, 0.2])
    opts = {"f": optim.Adam(f.params), "z0": optim.SGD(z0, lr=0.1, momentum=0.5)}
    opts["f"].step(np.ones(f.n_params))
    opts["z0"].step(np.ones(2))
    path = tmp_path / "ck.npz"
    pyode.save_checkpoint(path, model=f, optimizer=opts, extra={"z0": z0})
    ck = pyode.load_checkpoint(path)
    assert sorted(ck.optimizer) == ["f", "z0"]
    assert ck.optimizer["z0"]["kind"] == "SGD" and ck.optimizer["z0"]["momentum"] == 0.5
    assert np.array_equal(ck.optimizer["f"]["m"], opts["f"].m)
    assert np.array_equal(ck.optimizer["z0"]["velocity"], opts["z0"].velocity)
    assert np.array_equal(ck.extra["z0"], z0) and ck.step is None and ck.rng is None


def test_save_checkpoint_argument_errors(tmp_path):
    path = tmp_path / "ck.npz"
    with pytest.raises(TypeError, match="optimizer must be"):
        pyode.save_checkpoint(path, optimizer=[optim.Adam(np.zeros(2))])
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        pyode.save_checkpoint(path, rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match="step must be >= 0; got step=-2"):
        pyode.save_checkpoint(path, step=-2)
    with pytest.raises(TypeError, match=r"extra\['obj'\] is an array of dtype object"):
        pyode.save_checkpoint(path, extra={"obj": np.array([{}, 1], dtype=object)})
    with pytest.raises(TypeError, match=r"extra\['fn'\] must be an ndarray"):
        pyode.save_checkpoint(path, extra={"fn": print})
    assert os.listdir(tmp_path) == []


# -- atomic writes ----------------------------------------------------------------------------


def _interrupting_writer(fh, arrays):
    fh.write(b"PK\x03\x04 half an archive")
    fh.flush()
    raise KeyboardInterrupt


@pytest.mark.parametrize("writer", ["model", "checkpoint"])
def test_interrupted_write_leaves_the_old_file(writer, tmp_path, monkeypatch):
    f = FIELDS["tanh-cube"](np.float64, "numba")
    path = tmp_path / "state.npz"
    save = (lambda: f.save(path)) if writer == "model" else \
        (lambda: pyode.save_checkpoint(path, model=f, step=1))
    save()
    old_bytes = path.read_bytes()
    f.params[:] = 0.0
    monkeypatch.setattr(serialization, "_write_npz", _interrupting_writer)
    with pytest.raises(KeyboardInterrupt):
        save()
    assert sorted(os.listdir(tmp_path)) == ["state.npz"]     # the temporary file is gone
    assert path.read_bytes() == old_bytes
    monkeypatch.undo()
    loaded = nn.load(path) if writer == "model" else pyode.load_checkpoint(path).model
    assert not np.any(loaded.params == 0.0)


def test_interrupted_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(serialization, "_write_npz", _interrupting_writer)
    with pytest.raises(KeyboardInterrupt):
        pyode.save_checkpoint(tmp_path / "new.npz", step=3)
    assert os.listdir(tmp_path) == []


def test_written_file_gets_normal_permissions(tmp_path):
    path = tmp_path / "m.npz"
    FIELDS["tanh-cube"](np.float64, "numba").save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# -- files that are not ours ------------------------------------------------------------------


def _rewrite_meta(path, **changes):
    """Copy of a pyode file with its metadata changed (as a newer pyode might write it)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(str(arrays["__pyode__"][()]))
    for key, value in changes.items():
        target = meta
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    arrays["__pyode__"] = np.array(json.dumps(meta))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.npz"
    FIELDS["tanh-cube"](np.float64, "numba").save(path)
    return path


@pytest.fixture
def checkpoint_file(tmp_path):
    path = tmp_path / "ck.npz"
    f = FIELDS["tanh-cube"](np.float64, "numba")
    pyode.save_checkpoint(path, model=f, optimizer=optim.Adam(f.params), step=2)
    return path


def _raises_format_error(loader, path, match):
    with pytest.raises(SaveFormatError, match=match) as info:
        loader(path)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert isinstance(info.value, ValueError)


def test_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weights=np.ones(3))
    for loader in (nn.load, pyode.load_checkpoint):
        _raises_format_error(loader, path, r"without pyode's metadata entry '__pyode__'.*"
                                           r"\['weights'\].*numpy.load")


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not a zip", b"PK\x03\x04trunc"])
def test_garbage_bytes(content, tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(content)
    for loader in (nn.load, pyode.load_checkpoint):
        _raises_format_error(loader, path, "(an empty file|not a pyode file: an .npz is a "
                                           "zip|numpy cannot)")


def test_truncated_pyode_file(model_file):
    data = model_file.read_bytes()
    model_file.write_bytes(data[:len(data) // 2])
    _raises_format_error(nn.load, model_file, "not a pyode file|damaged")


def test_npy_file(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros(4))
    _raises_format_error(nn.load, path, r"a .npy file \(one array\), not a pyode .npz")


def test_newer_format_version(model_file, checkpoint_file):
    for path, loader in ((model_file, nn.load), (checkpoint_file, pyode.load_checkpoint)):
        _rewrite_meta(path, format_version=2, pyode_version="0.3")
        _raises_format_error(
            loader, path, rf"written by pyode 0.3 .* with format version 2; this pyode "
                          rf"{pyode.__version__} reads .* up to version 1: upgrade pyode")


def test_unknown_file_kind_and_layer_kind(model_file, tmp_path):
    other = tmp_path / "other.npz"
    other.write_bytes(model_file.read_bytes())
    _rewrite_meta(other, format="pyode.dataset", pyode_version="0.5")
    _raises_format_error(nn.load, other, "'pyode.dataset'.*upgrade pyode")
    _rewrite_meta(model_file, **{"model.class": "Sequential",
                                 "model.layers": [{"kind": "linear", "n_in": 2, "n_out": 7},
                                                  {"kind": "gelu"}],
                                 "pyode_version": "0.4"})
    _raises_format_error(nn.load, model_file,
                         r"layer 1 has kind 'gelu'.*written by pyode 0.4: upgrade pyode")


def test_wrong_kind_of_pyode_file(model_file, checkpoint_file):
    _raises_format_error(pyode.load_checkpoint, model_file,
                         r"a pyode model file .* read it with pyode.nn.load\(path\)")
    _raises_format_error(nn.load, checkpoint_file,
                         r"a pyode training checkpoint .* read it with "
                         r"pyode.load_checkpoint\(path\)")


def test_params_that_do_not_fit_the_architecture(model_file):
    with np.load(model_file, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["model.params"] = arrays["model.params"][:-1]
    with open(model_file, "wb") as fh:
        np.savez(fh, **arrays)
    _raises_format_error(nn.load, model_file, r"model.params has shape \(36,\).*needs shape "
                                              r"\(37,\)")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        nn.load(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError):
        pyode.load_checkpoint(tmp_path / "nope.npz")


def test_public_names():
    assert {"save_checkpoint", "load_checkpoint", "SaveFormatError"} <= set(pyode.__all__)
    assert pyode.SaveFormatError is SaveFormatError and "load" in nn.__all__


# -- issue: states that cannot be loaded, values that lose data, damaged metadata, save errors -


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_state_whose_lr_decayed_to_zero_loads(kind, tmp_path):
    """A schedule that ends at exactly 0 (cosine decay at the last step) writes lr = 0; the
    checkpoint must load. Only the constructor insists on lr > 0."""
    f = FIELDS["tanh-cube"](np.float64, "numba")
    opt = OPTIMIZERS[kind](f.params)
    opt.step(_grad(f.params, 0))
    opt.lr = 0.0
    path = tmp_path / "ck.npz"
    pyode.save_checkpoint(path, model=f, optimizer=opt, step=1)
    ck = pyode.load_checkpoint(path)
    again = getattr(optim, kind)(ck.model.params, lr=1.0)
    again.load_state_dict(ck.optimizer)
    assert again.lr == 0.0 and again.n_steps == 1
    before = ck.model.params.copy()
    again.step(_grad(before, 1))
    np.testing.assert_array_equal(ck.model.params, before)      # lr 0: no move
    with pytest.raises(ValueError, match=r"lr must be finite and > 0.0; got lr=0.0"):
        getattr(optim, kind)(np.zeros(3), lr=0.0)
    with pytest.raises(ValueError, match=r"state\['lr'\] must be finite and >= 0.0"):
        getattr(optim, kind)(np.zeros(3), lr=1.0).load_state_dict(
            {**getattr(optim, kind)(np.zeros(3), lr=1.0).state_dict(), "lr": -1e-3})


@pytest.mark.parametrize("kind, buffer, value, rule", [
    ("Adam", "v", -1e-12, "finite and >= 0"), ("Adam", "v", np.nan, "finite and >= 0"),
    ("Adam", "m", np.inf, "finite"), ("Adam", "m", np.nan, "finite"),
    ("RMSprop", "square_avg", -1.0, "finite and >= 0"), ("SGD", "velocity", -np.inf, "finite"),
])
def test_load_state_dict_refuses_impossible_buffers(kind, buffer, value, rule):
    source = OPTIMIZERS[kind](np.linspace(-1.0, 1.0, 5))
    source.step(np.ones(5))
    state = source.state_dict()
    state[buffer] = state[buffer].copy()
    state[buffer][3] = value
    target = OPTIMIZERS[kind](np.zeros(5))
    buffers_before = {name: getattr(target, name).copy() for name in target._BUFFERS}
    with pytest.raises(ValueError, match=rf"state\['{buffer}'\] of optim.{kind} must be "
                                         rf"{re.escape(rule)}.*entry 3 is {value!r}: the "
                                         r"state is damaged"):
        target.load_state_dict(state)
    assert target.n_steps == 0                       # nothing changed by the failed load
    for name, before in buffers_before.items():
        np.testing.assert_array_equal(getattr(target, name), before)


def test_negative_first_moments_and_velocities_load():
    """m and the SGD velocity are signed; only v and square_avg must be >= 0."""
    for kind in ("Adam", "SGD"):
        opt = OPTIMIZERS[kind](np.zeros(3))
        opt.step(-np.ones(3))
        state = opt.state_dict()
        OPTIMIZERS[kind](np.zeros(3)).load_state_dict(state)
        assert np.all(state["m" if kind == "Adam" else "velocity"] < 0)


def test_masked_array_in_extra_is_refused(tmp_path):
    value = np.ma.array([1.0, 2.0, 3.0], mask=[False, True, False])
    with pytest.raises(TypeError, match=r"extra\['obs'\] is a numpy.ma.MaskedArray, whose "
                                        r"mask .* value.filled\(fill_value\) and "
                                        r"numpy.ma.getmaskarray\(value\) as two entries"):
        pyode.save_checkpoint(tmp_path / "ck.npz", extra={"obs": value})
    assert os.listdir(tmp_path) == []
    # the way the message says works
    pyode.save_checkpoint(tmp_path / "ck.npz", extra={"obs": value.filled(0.0),
                                                      "obs_mask": np.ma.getmaskarray(value)})
    extra = pyode.load_checkpoint(tmp_path / "ck.npz").extra
    back = np.ma.array(extra["obs"], mask=extra["obs_mask"])
    assert back.mask.tolist() == [False, True, False] and back.sum() == 4.0


@pytest.mark.parametrize("value, name", [
    (np.datetime64("2020-01-02"), "datetime64"),
    (np.datetime64("2020-01-02T03:04:05.000000006"), "datetime64"),   # .item() is an int
    (np.timedelta64(3, "D"), "timedelta64"),
    (np.complex128(1j), "complex128"),
])
def test_numpy_scalars_that_cannot_be_stored_are_named(value, name, tmp_path):
    with pytest.raises(TypeError, match=rf"extra\['when'\] must be .*; got numpy.{name} "):
        pyode.save_checkpoint(tmp_path / "ck.npz", extra={"when": value})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("what", ["mlp", "sequential", "checkpoint"])
def test_architecture_asking_for_a_huge_allocation_is_refused(what, tmp_path):
    """Linear(2, 10**12) in damaged or crafted metadata: 16 TB of parameters. The sizes are
    compared with the stored params before the field is built, so no allocation is tried."""
    huge = 10 ** 12
    path = tmp_path / "m.npz"
    f = nn.MLP([2, 7, 2], activation="tanh", seed=1)
    if what == "checkpoint":
        pyode.save_checkpoint(path, model=f, step=0)
    else:
        f.save(path)
    layers = [{"kind": "linear", "n_in": 2, "n_out": huge}, {"kind": "tanh"},
              {"kind": "linear", "n_in": huge, "n_out": 2}]
    changes = {"model.layers": layers}
    if what == "sequential":
        changes["model.class"] = "Sequential"
    else:
        changes["model.args.sizes"] = [2, huge, 2]
    _rewrite_meta(path, **changes)
    loader = pyode.load_checkpoint if what == "checkpoint" else nn.load
    _raises_format_error(loader, path, rf"model.params has shape \(37,\); the stored "
                                       rf"architecture needs shape \({5 * huge + 2},\): the "
                                       r"file is damaged")


def test_save_to_an_empty_path_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = FIELDS["tanh-cube"](np.float64, "numpy")
    with pytest.raises(ValueError, match="path is empty"):
        f.save("")
    with pytest.raises(ValueError, match="path is empty"):
        pyode.save_checkpoint("", model=f)
    assert os.listdir(tmp_path) == []


def _assert_names_the_path(exc, path):
    text = str(exc)
    assert exc.filename == str(path) and repr(str(path)) in text, text
    assert ".tmp" not in text, text


def test_save_errors_name_the_path_given(tmp_path, monkeypatch):
    f = FIELDS["tanh-cube"](np.float64, "numpy")
    missing = tmp_path / "no_such_dir" / "m.npz"
    with pytest.raises(FileNotFoundError) as info:
        f.save(missing)
    _assert_names_the_path(info.value, missing)
    assert f"the directory {str(missing.parent)!r} does not exist: create it first" \
        in str(info.value)

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"'~' is not expanded") as info:
        f.save("~/runs/m.npz")                     # like numpy: a directory named "~"
    _assert_names_the_path(info.value, "~/runs/m.npz")
    assert "the directory '~/runs' does not exist" in str(info.value)

    with pytest.raises(IsADirectoryError) as info:
        pyode.save_checkpoint(tmp_path, model=f)
    _assert_names_the_path(info.value, tmp_path)
    assert os.listdir(tmp_path) == []


def test_save_error_in_a_read_only_directory_names_the_path(tmp_path, monkeypatch):
    """(Simulated: the tests may run as root, who can write anywhere.)"""
    def refuse(dir, prefix, suffix):
        raise PermissionError(errno.EACCES, "Permission denied",
                              os.path.join(dir, prefix + "x1y2z3" + suffix))

    monkeypatch.setattr(serialization.tempfile, "mkstemp", refuse)
    path = tmp_path / "m.npz"
    with pytest.raises(PermissionError) as info:
        FIELDS["tanh-cube"](np.float64, "numpy").save(path)
    _assert_names_the_path(info.value, path)
    assert "files cannot be created in" in str(info.value)


def test_failed_write_names_the_path_and_leaves_the_old_file(tmp_path, monkeypatch):
    f = FIELDS["tanh-cube"](np.float64, "numpy")
    path = tmp_path / "m.npz"
    f.save(path)
    old = path.read_bytes()

    def disk_full(fh, arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(serialization, "_write_npz", disk_full)
    with pytest.raises(OSError, match="No space left on device") as info:
        f.save(path)
    _assert_names_the_path(info.value, path)
    assert os.listdir(tmp_path) == ["m.npz"] and path.read_bytes() == old


def test_save_onto_a_symlink_writes_the_file_it_points_to(tmp_path):
    f = FIELDS["tanh-cube"](np.float64, "numpy")
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "model_v1.npz"
    f.save(target)
    link = tmp_path / "latest.npz"
    link.symlink_to(os.path.join("runs", "model_v1.npz"))
    f.params = f.params * 2.0
    f.save(link)
    assert link.is_symlink() and link.resolve() == target.resolve()
    np.testing.assert_array_equal(nn.load(target).params, f.params)
    assert sorted(os.listdir(tmp_path / "runs")) == ["model_v1.npz"]   # no temporary left
    dangling = tmp_path / "next.npz"
    dangling.symlink_to("runs/model_v2.npz")                           # not created yet
    pyode.save_checkpoint(dangling, model=f, step=3)
    assert dangling.is_symlink() and pyode.load_checkpoint(tmp_path / "runs" /
                                                           "model_v2.npz").step == 3


def test_save_format_error_parts_for_command_line_tools(model_file):
    """A CLI replaces the library fix ("read it with pyode.nn.load(path)") by its own option:
    the problem, the fix and the kind found are attributes, and survive pickling."""
    with pytest.raises(SaveFormatError) as info:
        pyode.load_checkpoint(model_file)
    exc = info.value
    assert exc.found == "pyode.model" and exc.fix == "read it with pyode.nn.load(path)"
    assert exc.problem.startswith("a pyode model file") and "pyode.nn.load" not in exc.problem
    assert str(exc) == f"{model_file}: {exc.problem}; {exc.fix}"
    again = pickle.loads(pickle.dumps(exc))
    assert (str(again), again.found, again.fix) == (str(exc), exc.found, exc.fix)
