"""The vector-field protocol as the gradient methods call it (README, "The vector-field
protocol"): which members each method needs, and per-sample wrappers of the field's VJP.

Every gradient method integrates one independent problem per row of a batch, so it needs the
field's derivatives one row at a time; these wrappers turn the protocol's calls (a 1-D call
for a 1-D problem, a batch call otherwise) into arrays with one row per sample.
"""
import numpy as np


def n_params(f):
    """P, the number of parameters of the field (0 when it has no ``params``)."""
    return int(np.asarray(getattr(f, "params", np.zeros(0))).size)


def require(f, members, why):
    """Raise TypeError naming the members of the protocol that ``f`` lacks.

    Parameters
    ----------
    f : vector field
    members : sequence of str
        Method names the caller needs (``"vjp"``, ``"jvp"``, ``"jvp_params"``).
    why : str
        Who needs them, for the message (e.g. ``"adjoint_method='forward'"``).
    """
    missing = [m for m in members if not callable(getattr(f, m, None))]
    if missing:
        raise TypeError(f"{why} needs a field with {', '.join(m + '(...)' for m in members)}; "
                        f"{type(f).__name__} has no {', '.join(missing)} (see the vector-field "
                        "protocol in the README)")


def vjp_rows(f, squeeze):
    """Per-sample VJP ``(t (n,), y (n, D), v (n, D)) → (vᵀf_y (n, D), vᵀf_θ (n, P), vᵀf_t (n,))``.

    ``squeeze``: call the field with 1-D arguments (one row, a float t), as for a 1-D problem.
    Otherwise uses the field's optional ``vjp_per_sample``, or calls ``vjp`` one sample at a
    time (the θ-part of ``vjp`` is summed over a batch, and the adjoint needs one per sample).
    """
    P = n_params(f)

    def rows(t, y, v):
        n = y.shape[0]
        if squeeze:
            vy, vth, vt = f.vjp(float(t[0]), y[0], v[0])
            return (np.asarray(vy)[None], np.asarray(vth, dtype=y.dtype).reshape(1, P),
                    np.asarray(vt, dtype=y.dtype).reshape(1))
        if hasattr(f, "vjp_per_sample"):
            vy, vth, vt = f.vjp_per_sample(t, y, v)
            return (np.asarray(vy), np.asarray(vth, dtype=y.dtype).reshape(n, P),
                    np.broadcast_to(np.asarray(vt, dtype=y.dtype), (n,)))
        vy = np.empty_like(y)
        vth = np.empty((n, P), dtype=y.dtype)
        vt = np.empty(n, dtype=y.dtype)
        for b in range(n):
            vy[b], vth[b], vt[b] = f.vjp(float(t[b]), y[b], v[b])
        return vy, vth, vt

    return rows
