"""The CUDA back end: thin wrappers around the kernels of ``kernels.cuda``.

Host arrays in and out, or numba-cuda device arrays for ``y0`` / ``grad_ys`` (results stay on
the device); scratch in global memory, one slice per thread; failures raised as on the CPU
(``pyode.backends.numba_cpu.raise_failure``). Importing this module needs numba-cuda.
"""
import numpy as np

from ..errors import CudaUnavailableError
from ..kernels import cuda as device     # the kernels (read THREADS_PER_BLOCK at launch)
from ..kernels.cuda import adjoint_kernel, cuda, forward_kernel
from ..kernels.numbers import adjoint_parts, forward_parts
from ..solvers import is_device_array
from .numba_cpu import raise_failure, stats_dict
from .program import packed


def check_device():
    """Raise :class:`CudaUnavailableError` unless a CUDA device (or the simulator) is usable."""
    if not cuda.is_available():
        raise CudaUnavailableError(
            "backend='cuda': no CUDA device was found. Use backend='numba' (CPU kernels), or run "
            "the CUDA kernels on the numba-cuda simulator by setting NUMBA_ENABLE_CUDASIM=1 in "
            "the environment before numba is imported (slow; meant for tests)")


def _launch(n):
    tpb = max(1, int(device.THREADS_PER_BLOCK))
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


def odeint_nn(f, yb, t_arr, tab, rtol, atol, opts, on_device=False):
    """Forward solve of an nn field on the GPU; returns ys (T, B, D) and stats (host arrays,
    or ``ys`` as a device array with ``on_device``)."""
    check_device()
    B, D = yb.shape
    dtype = yb.dtype
    k = packed(f, tab, rtol, atol, opts, D, forward_parts(D), dtype)
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
    raise_failure(d_status.copy_to_host(), d_fail.copy_to_host(), stats,
                     max_num_steps=opts.get("max_num_steps"))
    ys = d_ys if on_device else d_ys.copy_to_host()
    return ys, stats_dict(stats)


def adjoint_nn(f, yb, gb, t_arr, tab, rtol, atol, opts, seminorm=False, on_device=False,
               time_gradients=True):
    """Adjoint backward pass of an nn field on the GPU (``pyode.backends.numba_cpu.adjoint_nn``'s
    contract, ``time_gradients`` included, but a_theta comes back already summed over samples,
    shape (1, P))."""
    check_device()
    T, B, D = yb.shape
    dtype = yb.dtype
    P = f.params.size
    W = 2 * D + P + 1
    k = packed(f, tab, rtol, atol, opts, W, adjoint_parts(D, D, P, time_gradients, seminorm),
               dtype)
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
    raise_failure(d_status.copy_to_host(), d_fail.copy_to_host(), stats,
                     " in the adjoint (backward) solve", opts.get("max_num_steps"))
    a = d_a if on_device else d_a.copy_to_host()
    dLdt = d_g_t.copy_to_host().astype(np.float64) if time_gradients else None
    return a, d_g_theta.copy_to_host()[None], dLdt, stats_dict(stats), d_recon.copy_to_host()
