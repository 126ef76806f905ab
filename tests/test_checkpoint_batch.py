"""The checkpointed adjoint on user-written NumPy fields: one backward solve for the whole batch.

``pyode.checkpoint.checkpoint_pass`` integrates the adjoint of all B rows in one solve (each
row with its own step control), calls the field's vjp once per stage for all the rows being
stepped, and replays the forward segments of the rows that need one at the same moment
together (issue 14). Checked here:

1. a batch of B = 7 against each row solved alone (the 1-D problem): dL/dy0 per row to 1e-11
   relative (a batch may round differently: the rows share BLAS calls) and the same
   evaluations, steps and rejections per row; dL/dθ and dL/dt, sums over the rows, to 1e-11
   of their scale. float32: to 1e-4 (measured ≤ 3.3e-5), with the step counts within two
   steps: the solver's stage sums (``pyode.solvers.stage_inputs``, a matrix product, and the
   error estimate's ``tensordot``) round a row differently in a batch than alone, by an ulp,
   and a float32 error estimate of a small step is mostly rounding, so a step proposal moves
   (measured: 10 of 336 rows took one adjoint step more or less, the gradient then differing
   by C·rtol ≈ 3e-5; float64: none);
2. a batch of one row, (1, D), is bit-identical to the 1-D problem;
3. the number of field calls (``__call__`` and ``vjp``) does not grow with B;
4. central finite differences of ``odeint`` (STYLE.md §13), to C·rtol of the adjoint.

Fields: Lotka–Volterra and the explicitly time-dependent forced decay of ``problems.py`` (no
``vjp_per_sample``: the state is [a, a_t] and a_θ the quadrature of ``pyode.quadrature``), and
a hybrid field, a physics term plus a tanh MLP with its exact vjp (:class:`TanhHybrid`), with
and without ``vjp_per_sample`` (with it the state is [a, a_θ, a_t]).

Why equal counts can be asked of a batch: every field here computes each row with the same
operations whatever the batch (elementwise arithmetic and sums over short axes), so a row
rounds alike in a batch and alone, and only the solver's own batch-dependent rounding (≈ 1e-16)
separates them. A field written with matrix products (``problems.HybridMLP``: ``y @ W1.T``)
rounds a row differently in a batch of 1 and of 2 (BLAS); in float32 that moves the steps:
measured, one of its rows took 72 backward evaluations alone and 78 in a batch of two copies
of itself — a step proposal that landed on t_i alone fell 0.003 short of it in the batch.
"""
import numpy as np
import pytest

from problems import Field, ForcedDecay, LotkaVolterra
from pyode import odeint_adjoint
from test_adjoint import fd_gradients

C_GLOBAL = 100.0          # global-error constant of the solver tests (test_gradient_methods.py)
STATS = ("nfev", "n_accepted", "n_rejected")
ROW_RTOL = {np.float64: 1e-11, np.float32: 1e-4}
TOLS = {np.float64: dict(rtol=1e-7, atol=1e-9), np.float32: dict(rtol=1e-4, atol=1e-6)}


class TanhHybrid(Field):
    """Physics term plus a small network: y' = −k ⊙ y + W₂ tanh(W₁ y + b + u t).

    θ = [k (D), W₁ (H, D), b (H), u (H), W₂ (D, H)] (row-major). With s = tanh(p), p the
    pre-activation, and g = (vᵀW₂) ⊙ (1 − s²): vᵀ∂f/∂y = −k ⊙ v + gᵀW₁, vᵀ∂f/∂k = −v ⊙ y,
    vᵀ∂f/∂W₁ = g ⊗ y, vᵀ∂f/∂b = g, vᵀ∂f/∂u = g t, vᵀ∂f/∂W₂ = v ⊗ s, vᵀ∂f/∂t = g · u. Written
    with broadcasting and sums over the short axes (no matrix products), so each row is
    computed the same way in any batch (module docstring).
    """

    def __init__(self, D=2, H=4, seed=0):
        rng = np.random.default_rng(seed)
        self.D, self.H = D, H
        super().__init__(np.concatenate([rng.uniform(0.2, 1.0, D), rng.normal(0, 0.8, H * D),
                                         rng.normal(0, 0.3, H), rng.normal(0, 0.5, H),
                                         rng.normal(0, 0.8, D * H)]))

    def _parts(self):
        D, H = self.D, self.H
        k, W1, b, u, W2 = np.split(self.params, np.cumsum([D, H * D, H, H]))
        return k, W1.reshape(H, D), b, u, W2.reshape(D, H)

    def _hidden(self, t, y):
        k, W1, b, u, W2 = self._parts()
        return np.tanh(np.sum(y[:, None, :] * W1, axis=2) + b + t[:, None] * u)

    def _f(self, t, y):
        k, W1, b, u, W2 = self._parts()
        return -k * y + np.sum(self._hidden(t, y)[:, None, :] * W2, axis=2)

    def _vjp_rows(self, t, y, v):
        k, W1, b, u, W2 = self._parts()
        n = y.shape[0]
        s = self._hidden(t, y)
        g = np.sum(v[:, :, None] * W2, axis=1) * (1.0 - s * s)
        vy = -k * v + np.sum(g[:, :, None] * W1, axis=1)
        vth = np.concatenate([-v * y, (g[:, :, None] * y[:, None, :]).reshape(n, -1), g,
                              g * t[:, None], (v[:, :, None] * s[:, None, :]).reshape(n, -1)],
                             axis=1)
        return vy, vth, np.sum(g * u, axis=1)


class HybridPerSample(TanhHybrid):
    """The hybrid field with the optional ``vjp_per_sample`` (θ-part per row, (B, P))."""

    def vjp_per_sample(self, t, y, v):
        tb, yb, _ = self._batch(t, y)
        return self._vjp_rows(tb, yb, np.asarray(v).reshape(yb.shape))


FIELDS = {"lotka_volterra": LotkaVolterra, "forced_decay": ForcedDecay, "hybrid": TanhHybrid,
          "hybrid_per_sample": HybridPerSample}
SOLVERS = {"dopri5": {}, "bosh3": {}, "rk4": {"options": {"step_size": 0.05}}}


class Counting:
    """Counts the calls of ``__call__``, ``vjp`` and ``vjp_per_sample`` of a field."""

    def __init__(self, field):
        self.field, self.params = field, field.params
        self.calls = self.vjps = 0
        if hasattr(field, "vjp_per_sample"):
            self.vjp_per_sample = self._vjp_per_sample

    def __call__(self, t, y):
        self.calls += 1
        return self.field(t, y)

    def vjp(self, t, y, v):
        self.vjps += 1
        return self.field.vjp(t, y, v)

    def _vjp_per_sample(self, t, y, v):
        self.vjps += 1
        return self.field.vjp_per_sample(t, y, v)


def checkpoint(f, y0, t, w, method, every, norm, dtype, **extra):
    kw = dict(method=method, backend="numpy", adjoint_method="checkpoint",
              adjoint_options={"checkpoint_every": every, "norm": norm},
              **TOLS[dtype], **SOLVERS[method], **extra)
    ys, vjp = odeint_adjoint(f, y0, t, **kw)
    return ys, vjp(w)


def problem(B, dtype, seed=0, backward=False):
    rng = np.random.default_rng(seed)
    y0 = rng.uniform(0.5, 2.5, size=(B, 2)).astype(dtype)
    t = np.array([0.0, 0.35, 1.0, 1.6, 2.0])
    if backward:
        t = t[::-1] + 0.25
    w = rng.normal(size=(t.size, B, 2)).astype(dtype)
    return y0, t, w


def assert_close_to(got, want, rtol):
    """|got − want| ≤ rtol · ‖want‖∞ (relative to the scale of the gradient)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * np.max(np.abs(want)))


# ---------------------------------------------------------------------------------------------
# 1. A batch against its rows solved alone.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm", ["rms", "seminorm"])
@pytest.mark.parametrize("every", [1, 3])
@pytest.mark.parametrize("method", sorted(SOLVERS))
@pytest.mark.parametrize("name", sorted(FIELDS))
def test_batch_equals_samples_alone(name, method, every, norm, dtype):
    f = FIELDS[name]()
    y0, t, w = problem(7, dtype)
    _, g = checkpoint(f, y0, t, w, method, every, norm, dtype)
    assert g.y0.shape == (7, 2) and g.y0.dtype == g.params.dtype == dtype
    assert g.info.nfev.shape == (7,)
    params, times = np.zeros(f.params.size), np.zeros(t.size)
    for b in range(7):
        _, gb = checkpoint(f, y0[b], t, w[:, b], method, every, norm, dtype)
        assert_close_to(g.y0[b], gb.y0, ROW_RTOL[dtype])
        if dtype == np.float64:
            for k in STATS:
                assert getattr(g.info, k)[b] == getattr(gb.info, k), (b, k)
        else:                                   # rounding may move a step (module docstring)
            steps = g.info.n_accepted[b] + g.info.n_rejected[b]
            assert abs(steps - gb.info.n_accepted - gb.info.n_rejected) <= 2, b
        params += gb.params
        times += gb.t
    assert_close_to(g.params, params, ROW_RTOL[dtype])     # sums over the samples
    assert_close_to(g.t, times, ROW_RTOL[dtype])


@pytest.mark.parametrize("name", ["forced_decay", "hybrid_per_sample"])
def test_batch_equals_samples_alone_backward_in_time(name):
    # Output times decreasing: the forward solve runs toward −t, the adjoint toward +t.
    f = FIELDS[name]()
    y0, t, w = problem(7, np.float64, seed=3, backward=True)
    _, g = checkpoint(f, y0, t, w, "dopri5", 2, "rms", np.float64)
    for b in range(7):
        _, gb = checkpoint(f, y0[b], t, w[:, b], "dopri5", 2, "rms", np.float64)
        assert_close_to(g.y0[b], gb.y0, 1e-11)
        assert g.info.nfev[b] == gb.info.nfev


# ---------------------------------------------------------------------------------------------
# 2. One row is the 1-D problem, bit for bit.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("every", [1, 3])
@pytest.mark.parametrize("method", sorted(SOLVERS))
@pytest.mark.parametrize("name", sorted(FIELDS))
def test_one_row_is_bit_identical_to_the_one_dimensional_problem(name, method, every):
    f = FIELDS[name]()
    y0, t, w = problem(1, np.float64, seed=5)
    ys_b, g_b = checkpoint(f, y0, t, w, method, every, "rms", np.float64)
    ys_1, g_1 = checkpoint(f, y0[0], t, w[:, 0], method, every, "rms", np.float64)
    assert g_1.y0.shape == (2,) and isinstance(g_1.info.nfev, int)
    assert np.array_equal(ys_b[:, 0], ys_1)
    assert np.array_equal(g_b.y0[0], g_1.y0)
    assert np.array_equal(g_b.params, g_1.params)
    assert np.array_equal(g_b.t, g_1.t)
    for k in STATS:
        assert getattr(g_b.info, k)[0] == getattr(g_1.info, k)


# ---------------------------------------------------------------------------------------------
# 3. The field is called once per stage for all rows: calls do not grow with B.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("every", [1, 3])
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
@pytest.mark.parametrize("name", ["lotka_volterra", "hybrid_per_sample"])
def test_field_calls_do_not_grow_with_the_batch(name, method, every):
    # Identical rows take identical steps and need their replays at the same moments: the
    # number of calls is that of one row, whatever B (before: B times it).
    counts = {}
    for B in (3, 30):
        f = Counting(FIELDS[name]())
        y0, t, w = problem(1, np.float64, seed=7)
        y0, w = np.repeat(y0, B, axis=0), np.repeat(w, B, axis=1)
        ys, vjp = odeint_adjoint(f, y0, t, method=method, backend="numpy",
                                 adjoint_method="checkpoint",
                                 adjoint_options={"checkpoint_every": every},
                                 **TOLS[np.float64], **SOLVERS[method])
        f.calls = f.vjps = 0                   # the backward pass only
        g = vjp(w)
        counts[B] = (f.calls, f.vjps)
        assert np.all(g.info.nfev == g.info.nfev[0]) and f.calls > 0 and f.vjps > 0
    assert counts[3] == counts[30]


# ---------------------------------------------------------------------------------------------
# 4. Finite differences.
# ---------------------------------------------------------------------------------------------

def test_hybrid_vjp_matches_finite_differences_of_the_field():
    # The field's own derivatives first (STYLE.md §13): vᵀ∂f/∂(y, θ, t) against central
    # differences of vᵀf, step 1e-6 (truncation ≈ 1e-12 relative).
    f = TanhHybrid()
    rng = np.random.default_rng(2)
    t, y, v = rng.uniform(0, 2, 3), rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    vy, vth, vt = f._vjp_rows(t, y, v)
    eps = 1e-6

    def central(x, i, call):
        old = x[i]
        x[i] = old + eps
        up = call()
        x[i] = old - eps
        down = call()
        x[i] = old
        return (up - down) / (2 * eps)

    for b in range(3):
        loss = lambda: float(v[b] @ f(t[b:b + 1], y[b:b + 1])[0])        # noqa: E731
        fd_y = [central(y, (b, d), loss) for d in range(2)]
        fd_th = [central(f.params, p, loss) for p in range(f.params.size)]
        fd_t = central(t, b, loss)
        np.testing.assert_allclose(vy[b], fd_y, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(vth[b], fd_th, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(vt[b], fd_t, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(f.vjp(t, y, v)[1], vth.sum(axis=0), rtol=1e-14)


@pytest.mark.parametrize("name", ["hybrid", "hybrid_per_sample"])
def test_hybrid_gradients_match_finite_differences(name):
    # The adjoint errs by C·rtol relative (optimise-then-discretise); central differences of
    # the rtol 1e-10 forward solution by ≲ 1e-7 (test_adjoint.py, module docstring).
    f = FIELDS[name]()
    y0 = np.array([[1.2, 0.6], [0.4, 2.0]])
    t = np.array([0.0, 0.5, 1.2])
    w = np.random.default_rng(9).normal(size=(3, 2, 2))
    rtol = 1e-8
    ys, vjp = odeint_adjoint(f, y0, t, rtol=rtol, atol=1e-10, backend="numpy",
                             adjoint_method="checkpoint", adjoint_options={"checkpoint_every": 2})
    g = vjp(w)
    gy, gp, gt = fd_gradients(f, y0, t, w)
    assert_close_to(g.y0, gy, C_GLOBAL * rtol)
    assert_close_to(g.params, gp, C_GLOBAL * rtol)
    assert_close_to(g.t, gt, C_GLOBAL * rtol)
