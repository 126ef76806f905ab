"""Gradients of a user-written NumPy field: pyode's four methods against torchdiffeq and diffrax.

The workload (issue 14): Lotka–Volterra, y' = [αx − βxy, δxy − γy] with θ = (α, β, δ, γ) =
(1.5, 1.0, 1.0, 3.0), written as a plain Python class with hand-written derivatives (``__call__``,
``params``, ``vjp``, ``jvp``, ``jvp_params``; no ``vjp_per_sample``, so pyode sees it as any
user's field); a batch of B initial values drawn uniformly from [0.5, 2.5]² (fixed seed),
dopri5 with rtol 1e-6 and atol 1e-8, outputs at t = linspace(0, 5, 20), the loss L = the sum
of all outputs, and its gradient dL/dθ. Every timed call is a whole solve: forward and, for
the gradients, backward. The engines:

* ``pyode/odeint``: ``pyode.odeint(f, y0, t, rtol=1e-6, atol=1e-8)``, the forward alone; the
  unit of the ratios below;
* ``pyode/<m>``: ``odeint_adjoint(..., adjoint_method=m)`` and ``vjp(ones)`` for m in
  backsolve, checkpoint, discrete, forward (the pyode of ``--after-path``, the working tree);
* ``before/<m>``: the same run by the pyode of ``--before-path``, a worktree of commit
  b3d397f (before the batched backward of Python fields), made with
  ``git worktree add /tmp/pyode-before b3d397f``. Its backward calls the field's ``vjp``
  once per sample and step, so it is slow: by default it runs all four methods for B < 1000,
  backsolve alone for B ≥ 1000 (``--before-methods``), and only in the first
  ``--before-rounds`` rounds;
* ``torchdiffeq/odeint`` (forward, no grad), ``torchdiffeq/backprop`` (``loss.backward()``
  through ``torchdiffeq.odeint``) and ``torchdiffeq/odeint_adjoint``: the field in torch,
  float64, the batch as one state of shape (B, 2) (torchdiffeq takes one step size for the
  whole batch, with the error norm over all of it; pyode and the vmapped diffrax take their
  own steps per sample);
* ``diffrax/forward`` and ``diffrax/grad``: the field in jax (float64), ``jax.vmap`` over the
  samples of one ``diffeqsolve(ODETerm, Dopri5(), t0=0, t1=5, dt0=None, saveat=SaveAt(ts=t),
  stepsize_controller=PIDController(rtol, atol), adjoint=RecursiveCheckpointAdjoint())``,
  jitted; ``jax.grad`` of the summed outputs with respect to θ. Compilation (trace, lower and
  compile) is timed once, apart (``compile_s``); the timed calls are warm.

Each engine runs in a worker subprocess of its own (this script started again with
``--worker``; pyode is imported from the given path, torch and jax only in their workers),
which does the work and reports times on a pipe. Each one is called once untimed first: that
call gives the gradient and the field-evaluation counts. Then come ``--rounds`` alternating
rounds; each runs every engine once, starting one engine further on each time, so a slow
spell on the shared machine hits all of them. A call shorter than ``--min-time`` (0.05 s, from
the first call) is repeated back to back within its turn and timed as the mean
(``calls_per_timing``). Per engine the report gives the median, min and max wall time per call
and the median over the rounds of the ratio to that round's ``pyode/odeint`` time
(``before/*`` also to ``before/odeint``).

Agreement: dL/dθ of every engine against ``pyode/discrete``, as ‖g − g_ref‖ / ‖g_ref‖
(``grad_rel_diff``), with the relative difference of the loss. The methods differ by the
order of the tolerances (discrete is the exact derivative of the computed solution; the
adjoints and forward sensitivity approximate that of the exact solution; torchdiffeq steps
differently), so the check passes below ``--agree-tol`` (1e-4); the script exits with status 1
if any engine disagrees or fails (``errors``), after printing the report. Peers whose import fails are reported as
``{"skipped": reason}``.

Usage (the peers live in a venv of their own, ``pip install -e '.[bench]'``; see
examples/README.md)::

    git worktree add /tmp/pyode-before b3d397f
    .venv-bench/bin/python examples/benchmarks/python_field_gradients.py > grads.json
    .venv-bench/bin/python examples/benchmarks/python_field_gradients.py --sizes 20 --rounds 2

This is a benchmark, not a test: it measures what it prints.
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BEFORE = "/tmp/pyode-before"
BEFORE_COMMIT = "b3d397f"
THETA = (1.5, 1.0, 1.0, 3.0)
RTOL, ATOL = 1e-6, 1e-8
T_END, N_TIMES = 5.0, 20
Y0_LOW, Y0_HIGH = 0.5, 2.5
PYODE_METHODS = ("backsolve", "checkpoint", "discrete", "forward")
REFERENCE = "pyode/discrete"
ALL_ENGINES = ("pyode", "before", "torchdiffeq", "diffrax")
MAX_REPEAT = 1000


# -- the field, as a user writes it for pyode ---------------------------------------------------

class LotkaVolterra:
    """x' = αx − βxz, z' = δxz − γz; θ = (α, β, δ, γ). y is (2,) or (B, 2), t a float or (B,).

    ∂f/∂y = [[α − βz, −βx], [δz, δx − γ]];  ∂f/∂θ = [[x, −xz, 0, 0], [0, 0, xz, −z]].
    """

    def __init__(self, theta):
        self.params = np.array(theta, dtype=float)

    def __call__(self, t, y):
        a, b, d, g = self.params
        x, z = y[..., 0], y[..., 1]
        return np.stack([a * x - b * x * z, d * x * z - g * z], axis=-1)

    def jvp(self, t, y, u):
        a, b, d, g = self.params
        x, z = y[..., 0], y[..., 1]
        return np.stack([(a - b * z) * u[..., 0] - b * x * u[..., 1],
                         d * z * u[..., 0] + (d * x - g) * u[..., 1]], axis=-1)

    def jvp_params(self, t, y, w):
        x, z = y[..., 0], y[..., 1]
        return np.stack([w[0] * x - w[1] * x * z, w[2] * x * z - w[3] * z], axis=-1)

    def vjp(self, t, y, v):
        a, b, d, g = self.params
        x, z = y[..., 0], y[..., 1]
        vx, vz = v[..., 0], v[..., 1]
        v_y = np.stack([(a - b * z) * vx + d * z * vz, -b * x * vx + (d * x - g) * vz], axis=-1)
        v_theta = np.array([np.sum(vx * x), -np.sum(vx * x * z), np.sum(vz * x * z),
                            -np.sum(vz * z)])
        return v_y, v_theta, np.zeros_like(np.asarray(t, dtype=float))


# -- workers: one engine each, driven over a pipe -----------------------------------------------

class PyodeWorker:
    """pyode imported from ``path``: tasks ``odeint`` and the four adjoint methods."""

    def __init__(self, path):
        if path:
            # An editable install's import hook would resolve pyode.kernels to the installed
            # checkout even when pyode itself comes from ``path``: drop it.
            sys.meta_path[:] = [f for f in sys.meta_path
                                if "__editable__" not in getattr(f, "__module__", "")]
            sys.path.insert(0, str(path))
        import pyode
        self.pyode = pyode
        import numba
        kernels = sys.modules.get("pyode.kernels")
        self.versions = {"pyode_file": pyode.__file__,
                         "pyode_kernels_file": getattr(kernels, "__file__", None),
                         "numpy": np.__version__, "numba": numba.__version__}
        if path:
            bad = [f for f in (pyode.__file__, getattr(kernels, "__file__", None))
                   if f and not Path(f).resolve().is_relative_to(Path(path).resolve())]
            if bad:
                raise RuntimeError(f"pyode imported from outside {path}: {bad}")

    def setup(self, y0, t, theta):
        self.y0, self.t = np.array(y0, dtype=float), np.array(t, dtype=float)
        self.f = LotkaVolterra(theta)

    def tasks(self):
        return ("odeint",) + PYODE_METHODS

    def run(self, task, first=False):
        import warnings
        pyode = self.pyode
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if task == "odeint":
                if not first:
                    pyode.odeint(self.f, self.y0, self.t, rtol=RTOL, atol=ATOL)
                    return None
                ys, info = pyode.odeint(self.f, self.y0, self.t, rtol=RTOL, atol=ATOL,
                                        full_output=True)
                return {"loss": float(ys.sum()), "nfev_per_sample": _mean(info.nfev)}
            ys, vjp = pyode.odeint_adjoint(self.f, self.y0, self.t, rtol=RTOL, atol=ATOL,
                                           adjoint_method=task)
            g = vjp(np.ones_like(ys))
        if not first:
            return None
        out = {"loss": float(ys.sum()), "grad": np.asarray(g.params, float).tolist(),
               "nfev_backward_per_sample": _mean(getattr(getattr(g, "info", None), "nfev",
                                                         None))}
        fwd = getattr(g, "forward_info", None)
        if fwd is not None:
            out["nfev_forward_per_sample"] = _mean(fwd.nfev)
        if caught:
            out["warnings"] = sorted({f"{w.category.__name__}: {str(w.message)[:120]}"
                                      for w in caught})
        return out


class TorchWorker:
    """torchdiffeq: forward (no grad), backprop through odeint, odeint_adjoint."""

    def __init__(self, path=None):
        import torch
        import torchdiffeq
        self.torch, self.tde = torch, torchdiffeq
        self.versions = {"torch": torch.__version__,
                         "torchdiffeq": getattr(torchdiffeq, "__version__", None),
                         "torch_threads": torch.get_num_threads()}

        class LotkaVolterraTorch(torch.nn.Module):
            def __init__(self, theta):
                super().__init__()
                self.theta = torch.nn.Parameter(torch.tensor(theta, dtype=torch.float64))
                self.nfev = 0

            def forward(self, t, y):
                self.nfev += 1
                a, b, d, g = self.theta.unbind()
                x, z = y[:, 0], y[:, 1]
                return torch.stack([a * x - b * x * z, d * x * z - g * z], dim=1)

        self.field_class = LotkaVolterraTorch

    def setup(self, y0, t, theta):
        torch = self.torch
        self.y0 = torch.tensor(y0, dtype=torch.float64)
        self.t = torch.tensor(t, dtype=torch.float64)
        self.f = self.field_class(theta)

    def tasks(self):
        return ("odeint", "backprop", "odeint_adjoint")

    def run(self, task, first=False):
        torch, f = self.torch, self.f
        kw = dict(rtol=RTOL, atol=ATOL, method="dopri5")
        f.nfev = 0
        if task == "odeint":
            with torch.no_grad():
                ys = self.tde.odeint(f, self.y0, self.t, **kw)
            return {"loss": float(ys.sum()), "nfev_batch": f.nfev} if first else None
        f.zero_grad(set_to_none=True)
        solve = self.tde.odeint if task == "backprop" else self.tde.odeint_adjoint
        ys = solve(f, self.y0, self.t, **kw)
        nfev_forward = f.nfev
        loss = ys.sum()
        loss.backward()
        if not first:
            return None
        return {"loss": float(loss.detach()), "grad": f.theta.grad.tolist(),
                "nfev_forward_batch": nfev_forward, "nfev_backward_batch": f.nfev - nfev_forward}


class DiffraxWorker:
    """diffrax: vmapped single-sample solves, jitted forward and jax.grad (recursive checkpoint)."""

    def __init__(self, path=None):
        import jax
        jax.config.update("jax_enable_x64", True)
        import diffrax
        import equinox
        import jax.numpy as jnp
        import jaxlib
        self.jax, self.jnp, self.dfx = jax, jnp, diffrax
        self.versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
                         "diffrax": diffrax.__version__, "equinox": equinox.__version__,
                         "jax_devices": [str(d) for d in jax.devices()]}

    def setup(self, y0, t, theta):
        jax, jnp, dfx = self.jax, self.jnp, self.dfx
        ts = jnp.asarray(t, dtype=jnp.float64)

        def field(t, y, theta):
            a, b, d, g = theta
            x, z = y[0], y[1]
            return jnp.stack([a * x - b * x * z, d * x * z - g * z])

        term = dfx.ODETerm(field)

        def solve_one(theta, y0):
            sol = dfx.diffeqsolve(term, dfx.Dopri5(), t0=0.0, t1=T_END, dt0=None, y0=y0,
                                  args=theta, saveat=dfx.SaveAt(ts=ts),
                                  stepsize_controller=dfx.PIDController(rtol=RTOL, atol=ATOL),
                                  adjoint=dfx.RecursiveCheckpointAdjoint())
            return sol.ys, sol.stats["num_steps"]

        def forward(theta, y0s):
            return jax.vmap(solve_one, in_axes=(None, 0))(theta, y0s)

        def loss(theta, y0s):
            return jnp.sum(forward(theta, y0s)[0])

        self.theta = jnp.asarray(theta, dtype=jnp.float64)
        self.y0 = jnp.asarray(y0, dtype=jnp.float64)
        self.compile_s = {}
        self.fns = {}
        for name, fn in (("forward", forward), ("grad", jax.grad(loss))):
            start = time.perf_counter()
            self.fns[name] = jax.jit(fn).lower(self.theta, self.y0).compile()
            self.compile_s[name] = time.perf_counter() - start

    def tasks(self):
        return ("forward", "grad")

    def run(self, task, first=False):
        out = self.jax.block_until_ready(self.fns[task](self.theta, self.y0))
        if not first:
            return None
        res = {"compile_s": round(self.compile_s[task], 3)}
        if task == "forward":
            ys, steps = out
            res.update(loss=float(np.asarray(ys).sum()),
                       steps_per_sample=float(np.mean(np.asarray(steps))))
        else:
            res["grad"] = np.asarray(out, float).tolist()
        return res


WORKERS = {"pyode": PyodeWorker, "torchdiffeq": TorchWorker, "diffrax": DiffraxWorker}


def _mean(x):
    return None if x is None else round(float(np.mean(np.asarray(x, float))), 2)


def worker_main(kind, path):
    """Serve one engine: JSON requests on stdin, one JSON reply per line on the original stdout.

    File descriptor 1 is pointed at stderr, so nothing a library prints can corrupt the pipe.
    """
    pipe = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(obj):
        pipe.write(json.dumps(obj) + "\n")

    try:
        worker = WORKERS[kind](path)
    except Exception as e:            # an engine that cannot be imported is skipped
        reply({"skipped": f"{type(e).__name__}: {e}"})
        return
    reply({"ok": True, "versions": worker.versions, "tasks": list(worker.tasks())})
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["cmd"] == "setup":
                worker.setup(req["y0"], req["t"], req["theta"])
                reply({"ok": True})
            elif req["cmd"] == "first":
                start = time.perf_counter()
                res = worker.run(req["task"], first=True)
                reply({"ok": True, "first_s": time.perf_counter() - start, **res})
            elif req["cmd"] == "run":          # the mean of ``repeat`` back-to-back calls
                repeat = int(req.get("repeat", 1))
                start = time.perf_counter()
                for _ in range(repeat):
                    worker.run(req["task"])
                reply({"ok": True, "s": (time.perf_counter() - start) / repeat})
            elif req["cmd"] == "quit":
                return
        except Exception as e:
            reply({"error": f"{type(e).__name__}: {str(e)[:300]}"})


class Engine:
    """The parent's handle on one worker subprocess."""

    def __init__(self, label, kind, path=None):
        self.label = label
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind]
        if path:
            cmd += ["--pyode-path", str(path)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        hello = self._read()
        self.skipped = hello.get("skipped") or hello.get("error")
        self.versions = hello.get("versions", {})
        self.tasks = hello.get("tasks", [])

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            return {"error": f"worker exited (status {self.proc.wait()})"}
        return json.loads(line)

    def ask(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# -- the parent: rounds, statistics, agreement --------------------------------------------------

def log(msg):
    print(f"[python_field_gradients] {msg}", file=sys.stderr, flush=True)


def before_methods_for(B, choice):
    if choice == ["auto"]:
        return list(PYODE_METHODS) if B < 1000 else ["backsolve"]
    if choice == ["all"]:
        return list(PYODE_METHODS)
    return [m for m in choice if m != "none"]


def git_head(path):
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def rel_diff(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def summarize(times):
    return {"median_s": _sig(statistics.median(times)), "min_s": _sig(min(times)),
            "max_s": _sig(max(times)), "rounds": len(times)}


def _sig(x, digits=4):
    return float(f"{x:.{digits}g}")


def measure_size(engines, B, args, skipped):
    """Warm-up calls (gradients, counts), then the alternating rounds, for one batch size."""
    rng = np.random.default_rng(args.seed)
    y0 = rng.uniform(Y0_LOW, Y0_HIGH, size=(B, 2))
    t = np.linspace(0.0, T_END, N_TIMES)
    results = {label: {"skipped": why} for label, why in skipped.items()}
    jobs = []                         # (label, engine, task, calls per timing)
    before = before_methods_for(B, args.before_methods)
    for eng in engines:
        if eng.skipped:
            continue
        reply = eng.ask(cmd="setup", y0=y0.tolist(), t=t.tolist(), theta=list(THETA))
        if "error" in reply:
            results[eng.label] = {"error": reply["error"]}
            continue
        for task in eng.tasks:
            if eng.label == "before" and task != "odeint" and task not in before:
                continue
            label = f"{eng.label}/{task}"
            log(f"B={B}: first call of {label}")
            first = eng.ask(cmd="first", task=task)
            if "error" in first:
                results[label] = {"error": first["error"]}
                continue
            first.pop("ok")
            repeat = int(min(MAX_REPEAT, max(1, math.ceil(args.min_time / first["first_s"]))))
            first["first_s"] = _sig(first["first_s"])
            results[label] = {"first_call": first, "calls_per_timing": repeat}
            jobs.append((label, eng, task, repeat))

    times = {job[0]: [] for job in jobs}
    ratios = {job[0]: [] for job in jobs}
    before_ratios = {job[0]: [] for job in jobs}
    for r in range(args.rounds):
        k = r % max(len(jobs), 1)
        order = jobs[k:] + jobs[:k]
        round_s = {}
        start = time.perf_counter()
        for label, eng, task, repeat in order:
            if label.startswith("before/") and r >= args.before_rounds:
                continue
            reply = eng.ask(cmd="run", task=task, repeat=repeat)
            if "error" in reply:
                results[label]["error"] = reply["error"]
                continue
            round_s[label] = reply["s"]
            times[label].append(reply["s"])
        ref, ref_before = round_s.get("pyode/odeint"), round_s.get("before/odeint")
        for label, s in round_s.items():
            if ref:
                ratios[label].append(s / ref)
            if ref_before and label.startswith("before/"):
                before_ratios[label].append(s / ref_before)
        log(f"B={B}: round {r + 1}/{args.rounds} in {time.perf_counter() - start:.1f} s")

    for label, *_ in jobs:
        entry = results[label]
        if times[label]:
            entry.update(summarize(times[label]))
        if ratios[label]:
            entry["ratio_to_odeint_median"] = round(statistics.median(ratios[label]), 3)
        if before_ratios[label]:
            entry["ratio_to_before_odeint_median"] = round(
                statistics.median(before_ratios[label]), 3)

    agreement = {}
    ref = results.get(REFERENCE, {}).get("first_call", {})
    for label, entry in results.items():
        first = entry.get("first_call", {})
        if "grad" in first and "grad" in ref:
            agreement[label] = {"grad_rel_diff": _sig(rel_diff(first["grad"], ref["grad"]))}
        if "loss" in first and "loss" in ref:
            agreement.setdefault(label, {})["loss_rel_diff"] = _sig(
                rel_diff(first["loss"], ref["loss"]))
    bad = sorted(label for label, a in agreement.items()
                 if max(a.values()) > args.agree_tol)
    return {"B": B, "before_methods": before, "engines": results,
            "agreement": {"reference": REFERENCE, "reference_grad": ref.get("grad"),
                          "tol": args.agree_tol, "disagree": bad,
                          "ok": (not bad) if ref else None,      # None: no reference run
                          "by_engine": agreement}}


def machine_info():
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {"platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or None, "cpu_count": os.cpu_count(),
            "cpus_available": affinity, "python": platform.python_version(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000],
                   help="batch sizes B (default 100 1000)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per size (default 5)")
    p.add_argument("--engines", nargs="+", default=list(ALL_ENGINES), choices=ALL_ENGINES,
                   help="engines to run (default all)")
    p.add_argument("--before-path", default=DEFAULT_BEFORE,
                   help=f"checkout of the pyode before the rewrite (default {DEFAULT_BEFORE}: "
                        f"git worktree add {DEFAULT_BEFORE} {BEFORE_COMMIT})")
    p.add_argument("--after-path", default=str(ROOT),
                   help="checkout of the pyode measured as 'pyode' (default: this repository)")
    p.add_argument("--before-methods", nargs="+", default=["auto"],
                   choices=["auto", "all", "none", *PYODE_METHODS],
                   help="adjoint methods the 'before' pyode runs (default auto: all four for "
                        "B < 1000, backsolve alone for B >= 1000); its odeint always runs")
    p.add_argument("--before-rounds", type=int, default=3,
                   help="the 'before' engine runs in the first N rounds only (default 3)")
    p.add_argument("--agree-tol", type=float, default=1e-4,
                   help="largest relative difference of dL/dθ and L from pyode/discrete "
                        "(default 1e-4)")
    p.add_argument("--min-time", type=float, default=0.05,
                   help="a timing repeats a call back to back until about this many seconds "
                        "(from the first call's time; at most 1000 calls) and reports the mean "
                        "per call (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial values (default 0)")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--pyode-path", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds < 1 or args.before_rounds < 0 or min(args.sizes) < 1 or args.min_time < 0:
        p.error("--rounds and --sizes must be >= 1, --before-rounds and --min-time >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.pyode_path)
        return 0
    wall = time.perf_counter()
    report = {
        "benchmark": "dL/dθ of a user-written NumPy Lotka–Volterra field, L = sum of outputs",
        "workload": {"field": "Lotka–Volterra, plain Python class (vjp summed over the batch, "
                              "no vjp_per_sample)", "theta": list(THETA), "method": "dopri5",
                     "rtol": RTOL, "atol": ATOL, "t": f"linspace(0, {T_END}, {N_TIMES})",
                     "y0": f"uniform [{Y0_LOW}, {Y0_HIGH}]^2, seed {args.seed}",
                     "dtype": "float64", "rounds": args.rounds,
                     "before_rounds": args.before_rounds},
        "machine": machine_info(), "versions": {}, "skipped": {}, "sizes": [],
    }
    engines = []
    want = set(args.engines)
    if "pyode" in want:
        engines.append(Engine("pyode", "pyode", args.after_path))
        report["versions"]["pyode"] = {"path": args.after_path, "head": git_head(args.after_path),
                                       "note": "working tree, uncommitted changes included"}
    if "before" in want:
        if not (Path(args.before_path) / "pyode" / "__init__.py").is_file():
            report["skipped"]["before"] = (f"no pyode at {args.before_path}: git worktree add "
                                           f"{args.before_path} {BEFORE_COMMIT}")
        else:
            engines.append(Engine("before", "pyode", args.before_path))
            report["versions"]["before"] = {"path": args.before_path,
                                            "head": git_head(args.before_path)}
    for kind in ("torchdiffeq", "diffrax"):
        if kind in want:
            engines.append(Engine(kind, kind))
    try:
        for eng in engines:
            if eng.skipped:
                report["skipped"][eng.label] = eng.skipped
                log(f"{eng.label} skipped: {eng.skipped}")
            else:
                report["versions"].setdefault(eng.label, {}).update(eng.versions)
        for B in args.sizes:
            report["sizes"].append(measure_size(engines, B, args, report["skipped"]))
    finally:
        for eng in engines:
            eng.close()
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report["wall_s"] = round(time.perf_counter() - wall, 1)
    report["agree"] = all(s["agreement"]["ok"] is not False for s in report["sizes"])
    report["errors"] = [f"B={s['B']} {label}: {e['error']}" for s in report["sizes"]
                        for label, e in s["engines"].items() if "error" in e]
    print(json.dumps(report, indent=2))
    return 0 if report["agree"] and not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
