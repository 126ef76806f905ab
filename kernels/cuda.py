"""CUDA kernels (numba-cuda): one GPU thread per trajectory.

The per-trajectory math is the same source as the CPU kernels — ``kernels.rk.solve`` and
``kernels.rk.adjoint_one`` with ``kernels.mlp``'s forward and VJP, all ``register_jitable`` —
so a reader finds one stage loop and one MLP, not three copies. This module only adds the
thread indexing, the scratch memory and the reductions:

* Scratch lives in global memory, one slice per thread (layer widths and the state dimension
  are known only at run time, so no compile-time-sized local arrays are needed).
* dL/dθ and dL/dt are reduced across threads on the device with atomic adds into (P,) and (T,)
  arrays; no (B × P) array is copied to the host.

Importing this module needs numba-cuda (``pip install 'pyode[cuda]'``); importing ``pyode``
never does. Without a GPU, set ``NUMBA_ENABLE_CUDASIM=1`` before numba is imported to run these
kernels on the numba-cuda simulator (slow; for tests).
"""
import os

import numpy as np

from pyode.errors import CudaUnavailableError
from pyode.solvers import is_device_array

from . import rk
from .rk import AUGMENTED, C_FIRST_STEP, FORWARD, Packed, adjoint_one, solve

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


def check_device():
    """Raise :class:`CudaUnavailableError` unless a CUDA device (or the simulator) is usable."""
    if not cuda.is_available():
        raise CudaUnavailableError(
            "backend='cuda': no CUDA device was found. Use backend='numba' (CPU kernels), or run "
            "the CUDA kernels on the numba-cuda simulator by setting NUMBA_ENABLE_CUDASIM=1 in "
            "the environment before numba is imported (slow; meant for tests)")


def _launch(n):
    tpb = max(1, int(THREADS_PER_BLOCK))
    return (n + tpb - 1) // tpb, tpb


def _to_device(x, dtype, name):
    """Host arrays are converted explicitly (dtype, C order); device arrays must already match."""
    if is_device_array(x):
        if x.dtype != dtype:
            raise TypeError(f"{name} is a device array of dtype {x.dtype}; this call computes in "
                            f"{np.dtype(dtype)}: convert it before the call")
        if not _c_contiguous(x):
            raise TypeError(f"{name} is a non-contiguous device array; pass a C-contiguous one")
        return x
    return cuda.to_device(np.ascontiguousarray(x, dtype=dtype))


def _c_contiguous(x):
    strides = x.strides
    expect = x.dtype.itemsize
    for n, st in zip(reversed(x.shape), reversed(strides)):
        if n > 1 and st != expect:
            return False
        expect *= n
    return True


def _scratch(B, rows, cols, dtype):
    return cuda.device_array((B, rows, cols), dtype=dtype)


def odeint_nn(f, yb, t_arr, tab, rtol, atol, opts, n_norm=None, on_device=False):
    """Forward solve of an nn field on the GPU; returns ys (T, B, D) and stats (host arrays,
    or ``ys`` as a device array with ``on_device``)."""
    check_device()
    B, D = yb.shape
    dtype = yb.dtype
    k = Packed(f, tab, rtol, atol, opts, D, n_norm, dtype)
    T = t_arr.shape[0]
    s = k.tab.shape[0]
    d_y0 = _to_device(yb, dtype, "y0")
    d_ys = cuda.device_array((T, B, D), dtype=dtype)
    d_stats = cuda.to_device(np.zeros((B, 3), dtype=np.int64))
    d_status = cuda.to_device(np.zeros(B, dtype=np.int64))
    d_fail = cuda.to_device(np.zeros((B, 3), dtype=dtype))
    blocks, tpb = _launch(B)
    forward_kernel[blocks, tpb](
        cuda.to_device(k.ops), cuda.to_device(k.opf), cuda.to_device(k.theta), d_y0,
        cuda.to_device(np.ascontiguousarray(t_arr, dtype=dtype)), cuda.to_device(k.tab),
        cuda.to_device(k.atol), d_ys, d_stats, d_status, d_fail,
        _scratch(B, s + 3, D, dtype), _scratch(B, k.ops.shape[0] + 1, k.mw, dtype),
        _scratch(B, 2, k.mw, dtype), cuda.to_device(k.cst))
    stats = d_stats.copy_to_host()
    rk.raise_failure(d_status.copy_to_host(), d_fail.copy_to_host(), stats,
                     max_num_steps=opts.get("max_num_steps"))
    ys = d_ys if on_device else d_ys.copy_to_host()
    return ys, rk.stats_dict(stats)


def adjoint_nn(f, yb, gb, t_arr, tab, rtol, atol, opts, n_norm=None, on_device=False):
    """Adjoint backward pass of an nn field on the GPU (``kernels.rk.adjoint_nn``'s contract,
    but a_theta comes back already summed over samples, shape (1, P))."""
    check_device()
    T, B, D = yb.shape
    dtype = yb.dtype
    P = f.params.size
    W = 2 * D + P + 1
    k = Packed(f, tab, rtol, atol, opts, W, n_norm, dtype)
    s = k.tab.shape[0]
    d_a = cuda.device_array((B, D), dtype=dtype)
    d_g_theta = cuda.to_device(np.zeros(P, dtype=dtype))
    d_g_t = cuda.to_device(np.zeros(T, dtype=dtype))
    d_recon = cuda.device_array(B, dtype=dtype)
    d_stats = cuda.to_device(np.zeros((B, 3), dtype=np.int64))
    d_status = cuda.to_device(np.zeros(B, dtype=np.int64))
    d_fail = cuda.to_device(np.zeros((B, 3), dtype=dtype))
    blocks, tpb = _launch(B)
    adjoint_kernel[blocks, tpb](
        cuda.to_device(k.ops), cuda.to_device(k.opf), cuda.to_device(k.theta),
        _to_device(yb, dtype, "ys"), _to_device(gb, dtype, "grad_ys"),
        cuda.to_device(np.ascontiguousarray(t_arr, dtype=dtype)), cuda.to_device(k.tab),
        cuda.to_device(k.atol), d_a, d_g_theta, d_g_t, cuda.device_array((B, T), dtype=dtype),
        d_recon, d_stats, d_status, d_fail, _scratch(B, s + 3, W, dtype),
        _scratch(B, k.ops.shape[0] + 1, k.mw, dtype), _scratch(B, 2, k.mw, dtype),
        _scratch(B, 3, W, dtype), cuda.device_array((B, 2), dtype=dtype),
        cuda.to_device(k.cst))
    stats = d_stats.copy_to_host()
    rk.raise_failure(d_status.copy_to_host(), d_fail.copy_to_host(), stats,
                     " in the adjoint (backward) solve", opts.get("max_num_steps"))
    a = d_a if on_device else d_a.copy_to_host()
    return (a, d_g_theta.copy_to_host()[None], d_g_t.copy_to_host().astype(np.float64),
            rk.stats_dict(stats), d_recon.copy_to_host())
