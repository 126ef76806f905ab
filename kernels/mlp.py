"""Per-sample MLP forward and VJP shared by the CPU (``@njit``) and CUDA kernels.

A built-in ``pyode.nn.Sequential`` is compiled (``pyode.backends.program.op_table``) to an
int64 table ``ops`` of shape (n_ops, 4) — one row ``[kind, n_in, n_out, offset]`` per layer —
and an array ``opf`` (n_ops,) holding a layer's scalar parameter (ELU's α). The kernels interpret this table one
sample at a time, so layer widths known only at run time need no recompilation.

Activations ``acts`` (n_ops + 1, max_width): row k is the input of layer k, row n_ops the output.
The formulas are those of the layers of ``pyode.nn`` (the readable reference the tests compare
against); the parameter layout is the README's (W row-major, then b).

The functions are ``register_jitable``: plain Python that Numba compiles into whichever kernel
calls them, CPU or CUDA, so there is one MLP forward/VJP for both. Every constant comes from the
typed array ``cst`` (``kernels.rk``), never a Python float literal, so a float32 kernel does its
arithmetic in float32.
"""
import math

from numba.core.extending import register_jitable

LINEAR, TIME, IDENTITY, TANH, RELU, SOFTPLUS, SIGMOID, ELU, SIN, CUBE = range(10)
#: Op code of each activation, by the layer's ``name`` (``pyode.backends.program.op_table``).
ACTIVATION_CODES = {"identity": IDENTITY, "tanh": TANH, "relu": RELU, "softplus": SOFTPLUS,
                    "sigmoid": SIGMOID, "elu": ELU, "sin": SIN, "cube": CUBE}

# Indices of the constants the MLP needs in ``cst`` (the full layout is in kernels.rk).
C_ZERO, C_ONE, C_THREE = 0, 1, 2


@register_jitable
def _sigmoid(x, cst):
    one = cst[C_ONE]
    e = math.exp(-abs(x))
    return one / (one + e) if x >= cst[C_ZERO] else e / (one + e)


@register_jitable
def activation(kind, x, alpha, cst):
    """σ(x) for the activation code ``kind`` (formulas as in pyode.nn)."""
    zero = cst[C_ZERO]
    if kind == TANH:
        return math.tanh(x)
    if kind == RELU:
        return x if x > zero else zero
    if kind == SOFTPLUS:     # log(1 + eˣ) = max(x, 0) + log1p(e^−|x|), no overflow
        return math.log1p(math.exp(-abs(x))) + max(x, zero)
    if kind == SIGMOID:
        return _sigmoid(x, cst)
    if kind == ELU:
        return x if x > zero else alpha * math.expm1(x)
    if kind == SIN:
        return math.sin(x)
    if kind == CUBE:
        return x * x * x
    return x


@register_jitable
def activation_derivative(kind, x, y, alpha, cst):
    """σ'(x): the diagonal of the activation's Jacobian, given the input x and the output
    y = σ(x) of the forward pass (tanh and sigmoid reuse y instead of a second exp/tanh)."""
    zero, one = cst[C_ZERO], cst[C_ONE]
    if kind == TANH:
        return one - y * y                    # tanh' = 1 − tanh²
    if kind == RELU:
        return one if x > zero else zero
    if kind == SOFTPLUS:
        return _sigmoid(x, cst)
    if kind == SIGMOID:
        return y * (one - y)                  # σ' = σ(1 − σ)
    if kind == ELU:
        return one if x > zero else alpha * math.exp(x)
    if kind == SIN:
        return math.cos(x)
    if kind == CUBE:
        return cst[C_THREE] * x * x
    return one


@register_jitable
def mlp_forward(ops, opf, theta, t, x, acts, cst):
    """Run the layers on one sample: acts[0] = x, acts[k + 1] = layer_k(acts[k]).

    The output is ``acts[n_ops, :n_out]``. Linear: y_i = b_i + Σ_j W_ij x_j.
    """
    n_ops = ops.shape[0]
    for j in range(ops[0, 1]):
        acts[0, j] = x[j]
    for k in range(n_ops):
        kind, n_in, n_out, off = ops[k, 0], ops[k, 1], ops[k, 2], ops[k, 3]
        src = acts[k]
        dst = acts[k + 1]
        if kind == LINEAR:
            bias = off + n_out * n_in
            for i in range(n_out):
                row = off + i * n_in
                acc = theta[bias + i]
                for j in range(n_in):
                    acc += theta[row + j] * src[j]
                dst[i] = acc
        elif kind == TIME:
            for j in range(n_in):
                dst[j] = src[j]
            dst[n_in] = t
        else:
            for j in range(n_in):
                dst[j] = activation(kind, src[j], opf[k], cst)


@register_jitable
def mlp_vjp(ops, opf, theta, acts, v, gbuf, g_theta, cst):
    """Reverse pass after :func:`mlp_forward`: vᵀ∂f/∂x, vᵀ∂f/∂θ (added into g_theta), vᵀ∂f/∂t.

    Linear: ∂/∂x = Wᵀg, ∂/∂W = g xᵀ, ∂/∂b = g. Activation: g ⊙ σ'(x). Time input: the t
    cotangent is the last component of g.

    Returns
    -------
    g_t : float
        vᵀ∂f/∂t.
    cur : int
        Row of ``gbuf`` (2, max_width) holding vᵀ∂f/∂x.
    """
    n_ops = ops.shape[0]
    zero = cst[C_ZERO]
    cur = 0
    for i in range(ops[n_ops - 1, 2]):
        gbuf[0, i] = v[i]
    g_t = zero
    for k in range(n_ops - 1, -1, -1):
        kind, n_in, n_out, off = ops[k, 0], ops[k, 1], ops[k, 2], ops[k, 3]
        g = gbuf[cur]
        g_in = gbuf[1 - cur]
        x = acts[k]
        y = acts[k + 1]
        if kind == LINEAR:
            bias = off + n_out * n_in
            for j in range(n_in):
                g_in[j] = zero
            for i in range(n_out):
                gi = g[i]
                row = off + i * n_in
                g_theta[bias + i] += gi
                for j in range(n_in):
                    g_theta[row + j] += gi * x[j]
                    g_in[j] += theta[row + j] * gi
        elif kind == TIME:
            g_t += g[n_in]
            for j in range(n_in):
                g_in[j] = g[j]
        else:
            for j in range(n_in):
                g_in[j] = g[j] * activation_derivative(kind, x[j], y[j], opf[k], cst)
        cur = 1 - cur
    return g_t, cur
