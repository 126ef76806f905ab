"""CUDA kernels (numba-cuda): one GPU thread per trajectory.

The per-trajectory math is the same source as the CPU kernels — ``kernels.rk.solve`` and
``kernels.rk.adjoint_one`` with ``kernels.mlp``'s forward and VJP, all ``register_jitable`` —
so a reader finds one stage loop and one MLP, not three copies. This module only adds the
thread indexing, the scratch memory and the reductions:

* Scratch lives in global memory, one slice per thread (layer widths and the state dimension
  are known only at run time, so no compile-time-sized local arrays are needed).
* dL/dθ and dL/dt are reduced across threads on the device with atomic adds into (P,) and (T,)
  arrays; no (B × P) array is copied to the host.

The host side (allocation, launch, status codes to exceptions) is ``pyode.backends.cuda``.
Importing this module needs numba-cuda (``pip install 'pyode[cuda]'``); importing ``pyode``
never does. Without a GPU, set ``NUMBA_ENABLE_CUDASIM=1`` before numba is imported to run these
kernels on the numba-cuda simulator (slow; for tests).
"""
import os

from .codes import FORWARD
from .rk import C_FIRST_STEP, adjoint_one, solve

try:
    from numba import cuda
except ImportError as exc:         # pragma: no cover - depends on the installation
    raise ImportError("backend='cuda' needs numba-cuda: pip install 'pyode[cuda]'") from exc

#: Threads per block of the launches (tests under the simulator make it small so that several
#: blocks run).
THREADS_PER_BLOCK = int(os.environ.get("PYODE_CUDA_THREADS_PER_BLOCK", "128"))


def _forward_kernel(ops, opf, theta, y0, t_out, tab, atol, ys, stats, status, fail, work, acts,
                    gbuf, cst):
    """Thread b integrates row b of y0 (B, D) into ys[:, b] (``rk.solve``)."""
    bi = cuda.grid(1)
    if bi < y0.shape[0]:
        code, h = solve(FORWARD, ops, opf, theta, y0.shape[1], y0[bi], t_out, tab,
                        cst[C_FIRST_STEP], atol, ys[:, bi, :], work[bi], acts[bi], gbuf[bi],
                        stats[bi], fail[bi], cst)
        status[bi] = code


def _adjoint_kernel(ops, opf, theta, ys, gs, t_out, tab, atol, a_out, g_theta, g_t, gf, recon,
                    stats, status, fail, work, acts, gbuf, vec, span, cst):
    """Thread b runs the adjoint of sample b (``rk.adjoint_one``) and adds its dL/dθ and
    dL/dt into g_theta (P,) and g_t (T,) with atomics."""
    bi = cuda.grid(1)
    T, B, D = ys.shape
    if bi < B:
        P = theta.shape[0]
        code, r = adjoint_one(ops, opf, theta, D, ys[:, bi, :], gs[:, bi, :], t_out, tab,
                              atol, gf[bi], work[bi], acts[bi], gbuf[bi], vec[bi], span[bi],
                              stats[bi], fail[bi], cst)
        status[bi] = code
        recon[bi] = r
        state = vec[bi, 0]
        for j in range(D):
            a_out[bi, j] = state[D + j]
        for p in range(P):
            cuda.atomic.add(g_theta, p, state[2 * D + p])
        for i in range(T):
            cuda.atomic.add(g_t, i, gf[bi, i])


forward_kernel = cuda.jit(_forward_kernel)
adjoint_kernel = cuda.jit(_adjoint_kernel)
