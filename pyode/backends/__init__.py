"""Back ends: the thin wrappers between the public functions and the compiled kernels.

The layers, bottom up:

* ``kernels/`` (installed as ``pyode.kernels``) holds the compiled arithmetic — per-trajectory
  Runge–Kutta solves and adjoints, the MLP interpreter, the CPU batch kernels and the CUDA
  kernels. It imports numpy and numba only: nothing of ``pyode``. A kernel never validates and
  never raises; a failing sample leaves a status code (``kernels.codes``).
* ``pyode.backends`` (this package) converts a field and a problem into the kernels' arrays
  (:mod:`.program`), allocates, calls, and turns status codes into ``pyode.errors``
  exceptions: :mod:`.numba_cpu` for the CPU kernels, :mod:`.cuda` for the GPU.
* ``pyode.solvers``, ``pyode.adjoint`` and ``pyode.checkpoint`` validate the arguments and pick
  a back end (``pyode.solvers.kernel_module``).
"""
