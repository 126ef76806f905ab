"""Every CUDA kernel compiles to PTX for sm_90 (H100/H200), without a GPU.

``numba.cuda.compile_ptx`` needs NVVM/NVRTC, which the ``cuda`` extra brings as wheels
(numba-cuda[cu13]). Kernels that call device functions ask numba-cuda for the current device's
compute capability; with no GPU the test stubs that lookup with a (9, 0) device.
"""
import importlib.util
import os
import re

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("numba_cuda") is None
    or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1",
    reason="needs numba-cuda (pip install 'pyode[cuda]') and the real CUDA target")

# libdevice's sinf/cosf keep a float64 step in their huge-argument (|x| > 1e5) reduction:
# int64 → f64, × 2⁻⁶⁴·π/2, → f32. It is library code, not ours, and runs only for huge
# arguments; every other .f64 instruction in a float32 kernel would be ours.
_LIBDEVICE_TRIG = re.compile(
    r"cvt\.rn\.f64\.s64\s+(%fd\d+), %rd\d+;\s*\n\s*mul\.f64\s+(%fd\d+), \1, 0d3BF921FB54442D19;"
    r"\s*\n\s*cvt\.rn\.f32\.f64\s+%f\d+, \2;")


@pytest.fixture(scope="module")
def compile_ptx():
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda

    class _Sm90:
        compute_capability = (9, 0)

    saved = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: _Sm90()
    try:
        yield lambda fn, sig: cuda.compile_ptx(fn, sig, cc=(9, 0))[0]
    finally:
        dispatcher.get_current_device = saved


def _signatures(ft):
    from numba import types
    a1, a2, a3 = ft[::1], ft[:, ::1], ft[:, :, ::1]
    i1, i2 = types.int64[::1], types.int64[:, ::1]
    forward = (i2, a1, a1, a2, a1, a2, a1, a3, i2, i1, a2, a3, a3, a3, a1)
    adjoint = (i2, a1, a1, a3, a3, a1, a2, a1, a2, a1, a1, a2, a1, i2, i1, a2, a3, a3, a3, a3,
               a2, a1)
    return {"forward": forward, "adjoint": adjoint}


def _our_f64_lines(ptx):
    body = _LIBDEVICE_TRIG.sub("", ptx)
    return [ln for ln in body.splitlines() if ".f64" in ln and not ln.strip().startswith(".reg")]


@pytest.mark.parametrize("kernel", ["forward", "adjoint"])
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_kernels_compile_to_sm90_ptx(compile_ptx, kernel, precision):
    from numba import types

    from pyode.kernels import cuda as kc
    fn = {"forward": kc._forward_kernel, "adjoint": kc._adjoint_kernel}[kernel]
    ptx = compile_ptx(fn, _signatures(getattr(types, precision))[kernel])
    assert ".target sm_90" in ptx
    assert ".entry" in ptx
    if kernel == "adjoint":
        assert "atom.global.add" in ptx or "red.global.add" in ptx   # on-device reduction
    if precision == "float32":
        assert _our_f64_lines(ptx) == []          # float32 arithmetic stays in float32
    else:
        assert any("fma.rn.f64" in ln or "add.f64" in ln for ln in ptx.splitlines())


def test_a_float64_literal_would_be_caught(compile_ptx):
    # The check above can fail: a float32 kernel with one Python float literal in its
    # arithmetic shows .f64 instructions outside libdevice.
    from numba import cuda, types

    def promoted(x, out):
        i = cuda.grid(1)
        if i < x.shape[0]:
            out[i] = x[i] * 0.9

    ptx = compile_ptx(promoted, (types.float32[::1], types.float32[::1]))
    assert _our_f64_lines(ptx) != []


def _checkpoint_kernels():
    """Two CUDA kernels on the checkpointed adjoint's per-sample routines (built here: numba's
    CUDA target is imported only when the tests run)."""
    from numba import cuda

    from pyode.kernels.rk import C_FIRST_STEP, FORWARD, adjoint_one, solve

    def record(ops, opf, theta, y0, t_out, tab, atol, ys, steps, y_ck, every, stats, status,
               fail, work, acts, gbuf, cst):
        """Thread b: the forward solve of row b, recording its steps (``rk.record_batch``)."""
        bi = cuda.grid(1)
        if bi < y0.shape[0]:
            code, h = solve(FORWARD, ops, opf, theta, y0.shape[1], y0[bi], t_out, tab,
                            cst[C_FIRST_STEP], atol, ys[:, bi, :], work[bi], acts[bi],
                            gbuf[bi], stats[bi], fail[bi], cst, (steps[bi], y_ck[bi], every))
            status[bi] = code

    def backward(ops, opf, theta, ys, gs, t_out, tab, atol, steps, y_ck, meta, gf, stats,
                 status, fail, work, acts, gbuf, vec, span, Y, K, F, slot_seg, z, cst):
        """Thread b: the checkpointed adjoint of sample b (``rk.checkpoint_batch``), its
        replay slots in global memory."""
        bi = cuda.grid(1)
        T, B, D = ys.shape
        if bi < B:
            ctx = (steps[bi], y_ck[bi], meta[bi], Y[bi], K[bi], F[bi], slot_seg[bi], z[bi], tab,
                   stats[bi])
            status[bi], _ = adjoint_one(ops, opf, theta, D, ys[:, bi, :], gs[:, bi, :], t_out,
                                        tab, atol, gf[bi], work[bi], acts[bi], gbuf[bi],
                                        vec[bi], span[bi], stats[bi], fail[bi], cst, ctx)

    return record, backward


def test_checkpoint_routines_compile_to_sm90_ptx_in_float32(compile_ptx):
    # The checkpointed adjoint has no CUDA backend yet; its per-sample routines (the recording
    # hook of rk.solve and rk.adjoint_one with its replay context) are written so that one can
    # call them: they compile for the device, and a float32 kernel stays in float32.
    from numba import types
    ft = types.float32
    a1, a2, a3, a4, a5 = ft[::1], ft[:, ::1], ft[:, :, ::1], ft[:, :, :, ::1], ft[:, :, :, :, ::1]
    i1, i2 = types.int64[::1], types.int64[:, ::1]
    record = (i2, a1, a1, a2, a1, a2, a1, a3, a3, a3, types.int64, i2, i1, a2, a3, a3, a3, a1)
    checkpoint = (i2, a1, a1, a3, a3, a1, a2, a1, a3, a3, i2, a2, i2, i1, a2, a3, a3, a3, a3,
                  a2, a4, a5, a4, i2, a2, a1)
    for fn, sig in zip(_checkpoint_kernels(), (record, checkpoint)):
        ptx = compile_ptx(fn, sig)
        assert ".entry" in ptx
        assert _our_f64_lines(ptx) == []
