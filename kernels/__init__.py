"""Numba kernels for pyode (installed as ``pyode.kernels``)."""
