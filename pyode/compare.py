"""Every gradient method on one problem, side by side with finite differences.

:func:`compare_gradients` runs ``odeint_adjoint`` with each ``adjoint_method`` on the same
problem and loss, and central finite differences of ``odeint`` at a tight tolerance, and
reports for each method its gradient error against the differences, the field evaluations of
its forward and backward passes, its wall time and its peak memory — the comparison of Ma et
al. (2018), arXiv:1812.01892, as a table one can run on one's own field.

Peak memory is measured with :mod:`tracemalloc`: the largest amount of Python and NumPy memory
allocated during the forward + backward call above what was allocated before it. It does not
see memory allocated inside Numba kernels (the nn fields' backsolve), so compare memory on
``backend="numpy"``. Wall time comes from a second, untraced call (tracemalloc slows
allocation down); the first call also compiles any Numba kernel, so the time excludes that.
"""
from __future__ import annotations

import time
import tracemalloc
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from numpy.typing import ArrayLike

from .adjoint import ADJOINT_METHODS, FIELD_MEMBERS, odeint_adjoint
from .errors import SolverError
from .protocol import missing_members
from .solvers import check_times, check_y0, odeint
from .suggest import close_match

if TYPE_CHECKING:
    from .adjoint import AdjointGradients
    from .protocol import VectorField

#: An entry of ``methods``: an ``adjoint_method`` name, or a (name, adjoint_options) pair.
MethodSpec = Union[str, tuple[str, Union[dict[str, Any], None]]]

_PARTS = ("y0", "params", "t")
_PART_NAMES = {"y0": "dL/dy0", "params": "dL/dθ", "t": "dL/dt"}
_NOTE_WIDTH = 72        # characters of a failure message shown in the table (rows keep it all)
#: The numbers of a row whose method failed or was skipped.
_NOT_RUN = dict(time_s=np.nan, peak_kib=np.nan, nfev_forward=np.nan, nfev_backward=np.nan,
                err=np.nan, **{f"err_{p}": np.nan for p in _PARTS})


@dataclass
class GradientComparison:
    """The result of :func:`compare_gradients`.

    Attributes
    ----------
    rows : list of dict
        One per method, with keys ``method`` (label), ``err_y0``, ``err_params``, ``err_t``
        (relative errors, see :func:`compare_gradients`), ``err`` (the largest of them),
        ``nfev_forward``, ``nfev_backward`` (summed over the samples), ``time_s`` (wall time
        of forward + backward, s), ``peak_kib`` (peak traced memory, KiB), ``warnings`` (list
        of the warning class names raised), ``error`` (the solver error's message if the
        method failed, else None) and ``skipped`` (why the method does not apply to the field,
        e.g. "forward" on a field without ``jvp_params``, else None). A failed or skipped
        method's other entries are NaN.
    reference : dict
        ``{"y0", "params", "t"}``: the reference gradients (finite differences by default).
    gradients : dict
        Label → :class:`pyode.AdjointGradients` (absent for failed methods).
    value : float
        The loss at the inputs (of an ``odeint`` solve at the rtol/atol under test).
    title : str
    """

    rows: list[dict[str, Any]]
    reference: dict[str, np.ndarray]
    gradients: dict[str, AdjointGradients] = field(default_factory=dict)
    value: float = float("nan")
    title: str = ""

    def row(self, label: str) -> dict[str, Any]:
        """The row of the method ``label``.

        Raises
        ------
        KeyError
            No such method in the comparison.
        """
        for r in self.rows:
            if r["method"] == label:
                return r
        raise KeyError(f"no method {label!r} in this comparison; have "
                       f"{', '.join(r['method'] for r in self.rows)}")

    def __str__(self) -> str:
        head = ("method", "err y0", "err θ", "err t", "nfev fwd", "nfev bwd", "time s",
                "peak KiB", "notes")
        lines = []
        for r in self.rows:
            notes = ", ".join(r["warnings"])
            if r["error"]:
                notes = _shorten(f"failed: {r['error']}", _NOTE_WIDTH)
            elif r.get("skipped"):
                notes = _shorten(f"skipped: {r['skipped']}", _NOTE_WIDTH)
            lines.append((r["method"], _e(r["err_y0"]), _e(r["err_params"]), _e(r["err_t"]),
                          _i(r["nfev_forward"]), _i(r["nfev_backward"]), _f(r["time_s"], 3),
                          _f(r["peak_kib"], 1), notes))
        widths = [max(len(h), *(len(line[k]) for line in lines)) for k, h in enumerate(head)]
        fmt = "  ".join(f"{{:<{w}}}" if k in (0, 8) else f"{{:>{w}}}"
                        for k, w in enumerate(widths))
        out = [self.title] if self.title else []
        out += [fmt.format(*head).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
        out += [fmt.format(*line).rstrip() for line in lines]
        return "\n".join(out)


def compare_gradients(f: VectorField, y0: ArrayLike, t: ArrayLike,
                      loss: Callable[[np.ndarray], tuple[float, ArrayLike]],
                      methods: MethodSpec | Sequence[MethodSpec] = tuple(ADJOINT_METHODS),
                      method: str = "dopri5", rtol: float = 1e-7, atol: ArrayLike = 1e-9,
                      options: dict[str, Any] | None = None, backend: str = "auto",
                      fd_rtol: float = 1e-10, fd_atol: float = 1e-12, fd_eps: float = 1e-6,
                      reference: dict[str, ArrayLike] | None = None,
                      verbose: bool = True) -> GradientComparison:
    """Compare the gradient methods of ``odeint_adjoint`` with finite differences.

    Parameters
    ----------
    f : vector field
        As for :func:`pyode.odeint_adjoint`. A method whose protocol members the field lacks
        ("forward" needs ``jvp`` and ``jvp_params``, the others ``vjp``) is not run: its row
        says so under ``skipped``.
    y0 : array_like, shape (D,) or (B, D)
    t : array_like, shape (T,)
    loss : callable
        ``loss(ys) -> (value, dL/dys)`` with ``ys`` of shape (T, *y0.shape), e.g.
        ``lambda ys: pyode.losses.mse(ys, target)``.
    methods : str or sequence
        Entries are ``adjoint_method`` names, or ``(name, adjoint_options)`` pairs to compare
        options (``("backsolve", {"norm": "seminorm"})``, labelled ``backsolve(norm=seminorm)``).
        Default: all four methods.
    method, rtol, atol, options, backend
        The solve under test (as :func:`pyode.odeint_adjoint`; the adjoint tolerances default
        to rtol and atol).
    fd_rtol, fd_atol : float
        Tolerances of the reference solves of the finite differences (the same ``method`` and
        ``options``; with a fixed-step method the differences are of that discrete map).
    fd_eps : float
        Relative step of the central differences: ε·max(1, |x|) for each entry x of y0, θ, t.
        Their error is O(ε²) (truncation) + O(fd_rtol/ε) (the reference solves' error).
    reference : dict, optional
        ``{"y0", "params", "t"}`` reference gradients (e.g. a closed form) instead of finite
        differences; missing keys are not compared (NaN), any other key is refused.
    verbose : bool
        Print the table (default True: this is a tool for reading).

    Returns
    -------
    GradientComparison
        ``rows`` and a readable ``str()`` table. Relative errors are
        ``max|g − g_ref| / max|g_ref|`` over the entries of each part (the absolute
        ``max|g − g_ref|`` where ``g_ref`` is all zero).

    Raises
    ------
    TypeError
        ``loss`` is not callable, or ``methods`` has a malformed entry; or the finite
        differences cannot perturb the parameters: ``f.params`` returns a copy and the field
        has no setter (the message says how to fix the field).
    ValueError
        Bad arguments (as ``odeint_adjoint``), ``reference`` has a key other than "y0",
        "params" and "t", or ``loss`` returns a gradient of the wrong shape.

    Notes
    -----
    Costs 2·(entries of y0 + P + T) reference solves for the differences and two forward +
    backward calls per method (one traced for memory, one timed). A method whose solve fails
    (a ``SolverError``, e.g. an overflowing backward reconstruction) gets a row saying so.

    References
    ----------
    Ma, Dixit, Innes, Rackauckas et al. (2018), "A Comparison of Automatic Differentiation
    and Continuous Sensitivity Analysis for Derivatives of Differential Equation Solutions",
    arXiv:1812.01892.
    """
    if not callable(loss):
        raise TypeError(f"loss must be callable as loss(ys) -> (value, dL/dys), got "
                        f"{type(loss).__name__}")
    y0 = check_y0(y0)
    t = check_times(t)
    if isinstance(methods, str):             # one method given by name
        methods = [methods]
    entries = [_method_entry(m) for m in methods]
    if not entries:
        raise ValueError("methods is empty; give at least one of "
                         f"{', '.join(ADJOINT_METHODS)}")
    _check_reference(reference)
    solve_kw = dict(method=method, options=options, backend=backend)
    value, _ = _loss(loss, odeint(f, y0, t, rtol=rtol, atol=atol, **solve_kw))
    if reference is None:
        reference = _finite_differences(f, y0, t, loss, fd_eps,
                                        dict(solve_kw, rtol=fd_rtol, atol=fd_atol))
        source = f"central differences (eps={fd_eps:g}, rtol={fd_rtol:g}, atol={fd_atol:g})"
    else:
        source = "the given reference"
    title = (f"Gradient methods on {type(f).__name__}, y0 {y0.shape}, T={t.size}, "
             f"method={method}, rtol={rtol:g}, atol={atol:g}; errors against {source}")
    result = GradientComparison(rows=[], reference=reference, value=value, title=title)
    for label, name, aopts in entries:
        kw = dict(solve_kw, rtol=rtol, atol=atol, adjoint_method=name, adjoint_options=aopts)
        row = dict(method=label, warnings=[], error=None, skipped=None)
        needs = FIELD_MEMBERS.get(name, ())     # an unknown name: odeint_adjoint says so
        missing = missing_members(f, needs)
        if missing:
            row.update(skipped=(f"{name} needs {', '.join(needs)}; {type(f).__name__} has no "
                                f"{', '.join(missing)}"), **_NOT_RUN)
            result.rows.append(row)
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                peak = _peak_memory(lambda: _run(f, y0, t, loss, kw))
                start = time.perf_counter()
                g = _run(f, y0, t, loss, kw)
                row["time_s"] = time.perf_counter() - start
        except SolverError as err:
            row.update(error=f"{type(err).__name__}: {err}", **_NOT_RUN)
            result.rows.append(row)
            continue
        row["warnings"] = sorted({w.category.__name__ for w in caught})
        row["peak_kib"] = peak / 1024.0
        row["nfev_forward"] = int(np.sum(g.forward_info.nfev))
        row["nfev_backward"] = int(np.sum(g.info.nfev))
        for part in _PARTS:
            row[f"err_{part}"] = _relative_error(getattr(g, part), reference.get(part))
        row["err"] = float(np.nanmax([row[f"err_{p}"] for p in _PARTS]))
        result.gradients[label] = g
        result.rows.append(row)
    if verbose:
        print(result)
    return result


def _check_reference(reference):
    """Refuse a ``reference`` that is not a mapping or has a key that names no gradient
    (a misspelt key would otherwise leave that part uncompared, NaN, without a word)."""
    if reference is None:
        return
    if not isinstance(reference, Mapping):
        raise TypeError(f"reference must be a dict of reference gradients with keys "
                        f"{_valid_parts()}, got {type(reference).__name__}")
    for key in reference:
        if key not in _PARTS:
            match = close_match(key, _PARTS) if isinstance(key, str) else None
            hint = f"did you mean {match!r}? " if match else ""
            raise ValueError(f"reference has an unknown key {key!r}: {hint}its keys are "
                             f"{_valid_parts()} (leave a key out to not compare that part)")


def _valid_parts():
    return ", ".join(f"{p!r} ({_PART_NAMES[p]})" for p in _PARTS)


def _method_entry(m):
    """(label, adjoint_method, adjoint_options) from a name or a (name, options) pair."""
    if isinstance(m, str):
        return m, m, None
    if isinstance(m, (tuple, list)) and len(m) == 2 and isinstance(m[0], str) \
            and isinstance(m[1], (dict, type(None))):
        opts = m[1] or {}
        label = m[0] + ("(" + ", ".join(f"{k}={v}" for k, v in opts.items()) + ")"
                        if opts else "")
        return label, m[0], m[1]
    raise TypeError(f"each entry of methods must be an adjoint_method name or a (name, "
                    f"adjoint_options) pair, got {m!r}")


def _loss(loss, ys):
    out = loss(ys)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError(f"loss(ys) must return (value, dL/dys), got {type(out).__name__}")
    value, grad = out
    grad = np.asarray(grad, dtype=np.float64)
    if grad.shape != ys.shape:
        raise ValueError(f"loss(ys) returned dL/dys of shape {grad.shape}; it must have the "
                         f"shape of ys {ys.shape}")
    return float(value), grad


def _run(f, y0, t, loss, kw):
    ys, vjp = odeint_adjoint(f, y0, t, **kw)
    return vjp(_loss(loss, ys)[1])


def _peak_memory(fn):
    """Peak traced bytes allocated while ``fn()`` runs, above those allocated before."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        return max(tracemalloc.get_traced_memory()[1] - base, 0)
    finally:
        if started:
            tracemalloc.stop()


def _finite_differences(f, y0, t, loss, eps, kw):
    """Central differences of loss(odeint(...)) in every entry of y0, f.params and t."""
    y0 = np.array(y0, dtype=np.float64)
    t = np.array(t, dtype=np.float64)

    def value():
        return _loss(loss, odeint(f, y0, t, **kw))[0]

    def partials(x, store=None):
        """Differences in every entry of x; ``store(x)`` hands x over after each write."""
        def put(i, v):
            x[i] = v
            if store is not None:
                store(x)

        g = np.zeros(x.shape)
        for i in np.ndindex(x.shape):
            old = x[i]
            h = eps * max(1.0, abs(old))
            try:
                put(i, old + h)
                up = value()
                put(i, old - h)
                down = value()
            finally:
                put(i, old)
            g[i] = (up - down) / (2.0 * h)
        return g

    # f.params is written in place (writing into params changes the field) and restored, or
    # assigned through the field's setter when params returns a copy (_writable_params).
    params, store = _writable_params(f)
    return {"y0": partials(y0), "params": partials(params, store), "t": partials(t)}


def _writable_params(f):
    """``(array, store)``: the array whose entries the differences perturb, and how to hand it
    to the field (None: writing into ``f.params`` itself changes the field, the protocol's
    item 2; else a function that assigns the array with ``f.params = array``).

    Writing into a copy would perturb nothing and report the adjoint as wrong (an error of
    ~100 %), so the write is checked: one entry is changed, read back through ``f.params``
    and restored.

    Raises
    ------
    TypeError
        ``f.params`` returns a copy (or a read-only array) and the field has no setter that
        takes new parameters; the message says how to fix the field.
    """
    params = f.params
    arr = np.asarray(params)
    if arr.size == 0:
        return arr, None
    if _writes_through(f, arr):
        return arr, None
    setter = getattr(getattr(type(f), "params", None), "fset", None)
    if setter is not None:
        own = np.array(arr, dtype=arr.dtype)

        def store(values):
            f.params = values

        if _writes_through(f, own, store):
            return own, store
    name = type(f).__name__
    ignored = ", and its setter ignores new values" if setter is not None else ""
    raise TypeError(
        f"compare_gradients: writing into {name}.params does not change the field "
        f"({name}.params returns a copy{ignored}), so the finite-difference reference could "
        "not perturb the parameters and would report every method as wrong. Make params "
        "return the field's own array (e.g. self.params = np.asarray(theta) in __init__, read "
        "in __call__, jvp and vjp), or give the params property a setter that copies new "
        "values in; or pass your own reference= gradients")


def _writes_through(f, arr, store=None):
    """Change arr's first entry, hand it over (``store``), read ``f.params`` back, restore."""
    first = (0,) * arr.ndim
    old = arr[first].copy()
    probe = np.asarray(1.0 if old != 1.0 else 2.0, dtype=arr.dtype)
    try:
        arr[first] = probe
    except ValueError:                  # a read-only array
        return False
    try:
        if store is not None:
            store(arr)
        seen = np.asarray(f.params)
        return seen.shape == arr.shape and bool(seen[first] == probe)
    finally:
        arr[first] = old
        if store is not None:
            store(arr)


def _relative_error(g, ref):
    if ref is None:
        return float("nan")
    g, ref = np.asarray(g, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if g.shape != ref.shape:
        raise ValueError(f"reference gradient of shape {ref.shape} for a gradient of shape "
                         f"{g.shape}")
    if g.size == 0:
        return 0.0
    scale = np.max(np.abs(ref))
    err = np.max(np.abs(g - ref))
    return float(err / scale) if scale > 0 else float(err)


def _shorten(text, width):
    return text if len(text) <= width else text[:width - 3] + "..."


def _e(x):
    return "n/a" if not np.isfinite(x) else f"{x:.1e}"


def _i(x):
    return "n/a" if not np.isfinite(x) else f"{int(x)}"


def _f(x, digits):
    return "n/a" if not np.isfinite(x) else f"{x:.{digits}f}"
