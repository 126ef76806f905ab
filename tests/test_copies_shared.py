"""Copies made together keep sharing what they shared: a field and its optimiser.

``pickle.dumps((f, opt))`` or ``copy.deepcopy((f, opt))`` is how people snapshot a trainer;
the optimiser of the copy must go on updating the copied field (it holds the field's params
array, and pickle and deepcopy preserve such sharing for plain NumPy arrays).
"""
import copy
import pickle

import numpy as np
import pytest

from pyode import nn, odeint, optim

ROUND_TRIPS = {"pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
               "deepcopy": copy.deepcopy}


def _mlp():
    return nn.MLP([2, 8, 2], activation="tanh", seed=2)


def _model():
    return nn.Model(nn.Linear(2, 3), nn.ODEBlock(nn.MLP([3, 6, 3], seed=1), rtol=1e-6,
                                                 atol=1e-8), nn.Linear(3, 2), seed=3)


@pytest.mark.parametrize("how", sorted(ROUND_TRIPS))
@pytest.mark.parametrize("build", [_mlp, _model], ids=["MLP", "Model"])
def test_optimiser_copied_with_its_model_still_updates_it(how, build):
    f = build()
    opt = optim.Adam(f.params, lr=0.1)
    before = f.params.copy()
    g, g_opt = ROUND_TRIPS[how]((f, opt))
    assert g_opt.params is g.params
    g_opt.step(np.ones(g.n_params))
    assert not np.allclose(g.params, before)           # the copy moved ...
    np.testing.assert_array_equal(f.params, before)    # ... the original did not
    x = np.array([[0.3, -0.7]])
    if isinstance(g, nn.Sequential):                   # the views follow the shared array
        np.testing.assert_allclose(odeint(g, x, [0.0, 1.0], backend="numba"),
                                   odeint(g, x, [0.0, 1.0], backend="numpy"),
                                   rtol=1e-9, atol=1e-12)
    else:
        fresh = copy.deepcopy(g)
        np.testing.assert_array_equal(g(x), fresh(x))


def test_copy_copy_stays_independent():
    f = _mlp()
    g = copy.copy(f)
    g.params *= 2
    assert not np.allclose(f.params, g.params)
    y = np.array([0.5, -1.0])
    np.testing.assert_allclose(odeint(g, y, [0.0, 1.0], backend="numba"),
                               odeint(g, y, [0.0, 1.0], backend="numpy"), rtol=1e-9)
    assert not np.allclose(odeint(g, y, [0.0, 1.0]), odeint(f, y, [0.0, 1.0]))
