"""Save and load fields and whole training states in numpy's own ``.npz`` format (no pickle).

Two kinds of file, both ``.npz`` archives written with :func:`numpy.savez` and read with
``numpy.load(path, allow_pickle=False)``, so loading a file never runs code from it:

* a **model file** (``f.save(path)``, read by :func:`pyode.nn.load`): one field;
* a **checkpoint** (:func:`save_checkpoint`, read by :func:`load_checkpoint`): a training
  state — model, optimiser state(s), step, random generator and extra values.

Layout of a file
----------------
``__pyode__``
    0-d unicode array holding a JSON object: ``format`` (``"pyode.model"`` or
    ``"pyode.checkpoint"``), ``format_version`` (int, :data:`FORMAT_VERSION` when written),
    ``pyode_version`` and the description of the contents below. Floats are written by
    ``json`` with ``repr``, which reads back to the same double bit for bit.
``model.params``
    The field's ``params`` in its own dtype (float32 or float64).
``optimizer.<i>.<buffer>``, ``extra.<i>``
    Checkpoints only: optimiser buffers (``m``, ``v``, ``velocity``, ``square_avg``) and the
    array values of ``extra``, numbered in the order of the JSON lists that name them (user
    names never become archive names).

The model description is ``{"class": "MLP" or "Sequential", "layers": [...], "dtype",
"backend", "n_params", "seed"}`` plus, for an MLP, its constructor arguments ``"args"``
(``sizes``, ``activation``, ``time_input``, ``input_activation``). A layer is
``{"kind": "linear", "n_in", "n_out"}``, ``{"kind": "time_input"}`` or an activation
``{"kind": name}`` (ELU adds ``"alpha"``). Loading rebuilds the field from this description,
checks that its layers match the stored list, then copies ``params`` in.

Writes are atomic: the archive is written to a temporary file in the target's directory,
flushed and ``fsync``-ed, then renamed onto the target with :func:`os.replace`; an interrupt or
an error leaves the old file (or none) at the path and removes the temporary file. The target
is the path given or, for a symbolic link, the file it points to (the link stays a link). An
OSError of a save names the path given and the reason, never the temporary file; ``~`` is not
expanded (as in numpy), so ``"~/x.npz"`` names a directory ``~`` below the working directory.

Design decision: PyTorch's ``torch.save`` pickles whole objects (loading a foreign file can run
code, and files break when classes move); Equinox and Flax store only the arrays and rebuild
the structure from code. pyode stores the arrays plus a small declarative description, so a
file is self-describing and still pickle-free.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import tempfile
import zipfile
from typing import Any, Mapping

import numpy as np

from . import nn
from .errors import SaveFormatError
from .optim import Optimizer

__all__ = ["FORMAT_VERSION", "Checkpoint", "save_checkpoint", "load_checkpoint"]

#: Version of the file layout this pyode writes; it reads every version up to this one.
FORMAT_VERSION = 1
#: Name of the metadata entry of the archive (its presence marks a pyode file).
META_KEY = "__pyode__"
MODEL_FORMAT = "pyode.model"
CHECKPOINT_FORMAT = "pyode.checkpoint"
_ZIP_MAGIC = b"PK\x03\x04"      # an .npz is a zip archive (local file header first)
_NPY_MAGIC = b"\x93NUMPY"
_READERS = {MODEL_FORMAT: "pyode.nn.load(path)", CHECKPOINT_FORMAT: "pyode.load_checkpoint(path)"}
_WRITERS = {MODEL_FORMAT: "f.save(path)", CHECKPOINT_FORMAT: "pyode.save_checkpoint(path, ...)"}


def _pyode_version():
    import pyode
    return pyode.__version__


# ---------------------------------------------------------------------------------------------
# Atomic writing and checked reading of the archive
# ---------------------------------------------------------------------------------------------


def _write_npz(fh, arrays):
    """Write ``arrays`` (name -> ndarray) to the open binary file ``fh`` as an ``.npz``.

    A function of its own so that a test can interrupt the write half-way.
    """
    np.savez(fh, **arrays)


def _new_file_mode(path):
    """Permission bits for the file at ``path``: those of the file it replaces, else the
    umask's default (``tempfile.mkstemp`` creates files readable by the owner only)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    umask = os.umask(0)      # the only portable way to read the umask is to set it
    os.umask(umask)
    return 0o666 & ~umask


def _target(path):
    """The file a save to ``path`` writes: ``path`` itself, or the file a symbolic link there
    points to (also a link to a file not yet created), so the link stays a link.

    Raises ValueError for an empty path and IsADirectoryError for a directory, before anything
    is created.
    """
    if not path:
        raise ValueError("path is empty: pass the file to write, e.g. 'model.npz'")
    target = os.path.realpath(path) if os.path.islink(path) else path
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "Is a directory (pass the path of a file to "
                                "write, e.g. one inside it)", path)
    return target


def _save_error(exc, path, directory):
    """``exc`` (an OSError of the temporary file, the rename or the write) as an OSError of the
    same type that names ``path`` — the file the caller asked for — and the reason."""
    reason = exc.strerror or str(exc)
    # The directory as the caller wrote it, unless a symbolic link led elsewhere.
    given = os.path.dirname(path) or "."
    if not os.path.islink(path) and os.path.abspath(given) == directory:
        directory = given
    if isinstance(exc, FileNotFoundError) and not os.path.isdir(directory):
        reason += f" (the directory {directory!r} does not exist: create it first"
        if path.startswith("~"):
            reason += "; '~' is not expanded: pass os.path.expanduser(path)"
        reason += ")"
    elif isinstance(exc, PermissionError):
        reason += f" (files cannot be created in {directory!r})"
    if exc.errno is None:
        return OSError(f"cannot write {path!r}: {reason}")
    return OSError(exc.errno, reason, path)


def _atomic_savez(path, arrays):
    """Write ``arrays`` to exactly ``path`` (no ``.npz`` appended), atomically.

    The archive goes to a temporary file in the directory of the target, is flushed and
    ``fsync``-ed, then :func:`os.replace` puts it at the target. The target is ``path``, or the
    file it links to when ``path`` is a symbolic link (the link is kept). On any exception
    (also KeyboardInterrupt) the temporary file is removed and the target is left as it was;
    an OSError names ``path``, not the temporary file. ``~`` is not expanded, as in numpy.
    """
    shown = os.fsdecode(os.fspath(path))
    target = _target(shown)
    directory = os.path.dirname(os.path.abspath(target))
    mode = _new_file_mode(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.",
                                   suffix=".tmp")
    except OSError as exc:
        raise _save_error(exc, shown, directory) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            _write_npz(fh, arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _save_error(exc, shown, directory) from None
        raise
    # Make the rename itself durable (POSIX); not possible or needed everywhere.
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _read_archive(path, expected):
    """Read a pyode ``.npz``; return ``(meta, arrays)`` after checking format and version.

    ``expected`` is the format the caller reads (``MODEL_FORMAT`` or ``CHECKPOINT_FORMAT``).
    """
    name = os.fspath(path)
    with open(name, "rb") as fh:         # FileNotFoundError etc. as usual
        head = fh.read(len(_NPY_MAGIC))
    if head.startswith(_NPY_MAGIC):
        raise SaveFormatError(name, "a .npy file (one array), not a pyode .npz file",
                              fix=f"pass a file written by {_WRITERS[expected]}")
    if not head:
        raise SaveFormatError(name, "an empty file, not a pyode file (an interrupted copy?)",
                              fix=f"pass a file written by {_WRITERS[expected]}")
    if not head.startswith(_ZIP_MAGIC):
        raise SaveFormatError(
            name, f"not a pyode file: an .npz is a zip archive starting with {_ZIP_MAGIC!r}, "
                  f"this file starts with {head!r}",
            fix=f"pass a file written by {_WRITERS[expected]}")
    try:
        data = np.load(name, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SaveFormatError(
            name, f"not a pyode file: numpy cannot read it as an .npz archive ({exc}); it may "
                  "be truncated", fix=f"pass a file written by {_WRITERS[expected]}") from None
    with data:
        if META_KEY not in data.files:
            raise SaveFormatError(
                name, f"an .npz archive without pyode's metadata entry {META_KEY!r} (it holds "
                f"{sorted(data.files)[:6]}): pyode did not write it",
                fix=f"read it with numpy.load, or pass a file written by {_WRITERS[expected]}")
        try:
            arrays = {key: data[key] for key in data.files}
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
            raise SaveFormatError(
                name, f"damaged archive ({exc}); the file was probably truncated or changed "
                "after it was written: use an earlier copy") from None
    meta = _parse_meta(name, arrays.pop(META_KEY))
    _check_format(name, meta, expected)
    return meta, arrays


def _parse_meta(name, raw):
    if raw.ndim != 0 or raw.dtype.kind != "U":
        raise SaveFormatError(
            name, f"the {META_KEY!r} entry is a {raw.dtype} array of shape {raw.shape}, not "
            "pyode's JSON string: the file is damaged or not a pyode file")
    try:
        meta = json.loads(str(raw[()]))
    except ValueError as exc:
        raise SaveFormatError(
            name, f"the {META_KEY!r} entry is not valid JSON ({exc}): the file is damaged")
    if not isinstance(meta, dict):
        raise SaveFormatError(name, f"the {META_KEY!r} entry is not a JSON object: damaged")
    return meta


def _check_format(name, meta, expected):
    fmt = meta.get("format")
    version = meta.get("format_version")
    written_by = meta.get("pyode_version", "an unknown version")
    if not isinstance(fmt, str) or not fmt.startswith("pyode."):
        raise SaveFormatError(name, f"unknown file format {fmt!r}: pyode did not write it",
                              fix=f"pass a file written by {_WRITERS[expected]}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SaveFormatError(
            name, f"format version {version!r} is not a positive integer: the file is damaged")
    if version > FORMAT_VERSION or fmt not in _READERS:
        raise SaveFormatError(
            name, f"written by pyode {written_by} as {fmt!r} with format version {version}; "
            f"this pyode {_pyode_version()} reads {sorted(_READERS)} up to version "
            f"{FORMAT_VERSION}: upgrade pyode to read it")
    if fmt != expected:
        what = {MODEL_FORMAT: "a pyode model file (written by f.save; the field only), not a "
                              "training checkpoint",
                CHECKPOINT_FORMAT: "a pyode training checkpoint (written by "
                                   "pyode.save_checkpoint; its .model is the field), not a "
                                   "model file"}[fmt]
        raise SaveFormatError(name, what, fix=f"read it with {_READERS[fmt]}", found=fmt)


def _meta(fmt, **content):
    return {"format": fmt, "format_version": FORMAT_VERSION,
            "pyode_version": _pyode_version(), **content}


def _meta_array(meta):
    # allow_nan: a best loss may still be inf; Python's json reads Infinity/NaN back.
    return np.array(json.dumps(meta, allow_nan=True))


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def _describe_layer(index, layer):
    kind = type(layer)
    if kind is nn.Linear:
        return {"kind": "linear", "n_in": layer.n_in, "n_out": layer.n_out}
    if kind is nn.TimeInput:
        return {"kind": "time_input"}
    if nn.ACTIVATIONS.get(getattr(layer, "name", None)) is kind:
        if kind is nn.ELU:
            return {"kind": "elu", "alpha": layer.alpha}
        return {"kind": layer.name}
    raise TypeError(
        f"layers[{index}] is {layer!r} ({kind.__module__}.{kind.__qualname__}), which the pyode "
        f"file format cannot describe: it stores Linear, TimeInput and the activations "
        f"{sorted(nn.ACTIVATIONS)}; save the parameters yourself with "
        "numpy.save(path, f.params) and rebuild the field in code")


def _describe_model(f):
    """The JSON description of ``f`` (module docstring); TypeError for what it cannot hold."""
    if type(f) not in (nn.Sequential, nn.MLP):
        raise TypeError(
            f"model must be a pyode.nn.Sequential or pyode.nn.MLP; got "
            f"{type(f).__module__}.{type(f).__qualname__}: a subclass's own code and attributes "
            "cannot be stored without pickle; save f.params with numpy.save and rebuild it")
    desc = {"class": type(f).__name__,
            "layers": [_describe_layer(i, layer) for i, layer in enumerate(f.layers)],
            "dtype": f.dtype.name, "backend": f.backend, "n_params": int(f.n_params),
            "seed": int(f.seed) if nn._is_int(f.seed) else None}
    if isinstance(f, nn.MLP):
        hidden = _mlp_hidden_activation(f)
        inp = f.layers[0] if f.input_activation is not None else None
        desc["args"] = {"sizes": list(f.sizes),
                        "activation": _describe_layer(-1, hidden),
                        "time_input": bool(f.time_input),
                        "input_activation": None if inp is None else _describe_layer(0, inp)}
    return desc


def _mlp_hidden_activation(f):
    """The hidden activation instance of an MLP (ELU keeps its α), or a fresh one by name
    when the MLP has no hidden layer."""
    seen_linear = False
    for layer in f.layers:
        if isinstance(layer, nn.Linear):
            seen_linear = True
        elif seen_linear and isinstance(layer, nn.Activation):
            return layer
    return nn.get_activation(f.activation)


def _build_layer(name, written_by, index, spec):
    if not isinstance(spec, dict):
        raise SaveFormatError(name, f"layer {index} is described by {spec!r}, not a JSON "
                                    "object: the file is damaged")
    kind = spec.get("kind")
    try:
        if kind == "linear":
            return nn.Linear(spec["n_in"], spec["n_out"])
        if kind == "time_input":
            return nn.TimeInput()
        if kind == "elu":
            return nn.ELU(spec["alpha"])
        if kind in nn.ACTIVATIONS:
            return nn.ACTIVATIONS[kind]()
    except (KeyError, TypeError, ValueError) as exc:
        raise SaveFormatError(name, f"layer {index} ({spec!r}) cannot be built ({exc}): the "
                                    "file is damaged") from None
    known = ["linear", "time_input", *sorted(nn.ACTIVATIONS)]
    raise SaveFormatError(
        name, f"layer {index} has kind {kind!r}, which this pyode {_pyode_version()} does not "
        f"know (it knows {known}); the file was written by pyode {written_by}: upgrade pyode")


def _model_arrays(f, prefix="model."):
    return {prefix + "params": np.ascontiguousarray(f.params)}


def _build_model(name, meta, desc, arrays, prefix="model."):
    """Rebuild the field described by ``desc`` with the params in ``arrays``."""
    written_by = meta.get("pyode_version", "an unknown version")
    if not isinstance(desc, dict) or not isinstance(desc.get("layers"), list):
        raise SaveFormatError(name, "the model description has no layer list: damaged file")
    cls = desc.get("class")
    if cls not in ("MLP", "Sequential"):
        raise SaveFormatError(
            name, f"model class {cls!r} is unknown to this pyode {_pyode_version()} (it reads "
            f"MLP and Sequential); the file was written by pyode {written_by}: upgrade pyode")
    layers = [_build_layer(name, written_by, i, spec) for i, spec in enumerate(desc["layers"])]
    params = arrays.get(prefix + "params")
    if params is None:
        raise SaveFormatError(name, f"no {prefix}params entry: the file is damaged")
    # Compare the sizes before building the field: building allocates (and initialises) all
    # the parameters the description asks for, and a damaged or crafted description can ask
    # for terabytes (Linear(2, 10**12)); the stored array is what was really written.
    needed = _needed_params(name, cls, desc, layers)
    if params.shape != (needed,):
        raise SaveFormatError(
            name, f"{prefix}params has shape {params.shape}; the stored architecture needs "
            f"shape ({needed},): the file is damaged (or was changed after it was written); "
            "use an earlier copy")
    seed = desc.get("seed")
    try:
        common = {"seed": seed if nn._is_int(seed) else 0, "dtype": desc["dtype"],
                  "backend": desc["backend"]}
        if cls == "MLP":
            args = desc["args"]
            inp = args["input_activation"]
            f = nn.MLP(args["sizes"],
                       activation=_build_layer(name, written_by, "activation",
                                               args["activation"]),
                       time_input=args["time_input"],
                       input_activation=(None if inp is None
                                         else _build_layer(name, written_by, 0, inp)),
                       **common)
        else:
            f = nn.Sequential(*layers, **common)
    except (KeyError, TypeError, ValueError) as exc:
        raise SaveFormatError(name, f"the model description cannot be built ({exc!r}): the "
                                    "file is damaged") from None
    f.seed = seed if nn._is_int(seed) else None
    rebuilt = [_describe_layer(i, layer) for i, layer in enumerate(f.layers)]
    if rebuilt != desc["layers"]:
        raise SaveFormatError(name, f"the MLP arguments {desc.get('args')!r} do not give the "
                                    f"stored layer list {desc['layers']!r}: the file is damaged")
    if params.shape != f.params.shape or params.dtype != f.dtype:
        raise SaveFormatError(
            name, f"{prefix}params has shape {params.shape} and dtype {params.dtype}; the "
            f"stored architecture needs shape {f.params.shape} and dtype {f.dtype}: the file is "
            "damaged")
    f.params = params
    return f


def _needed_params(name, cls, desc, layers):
    """The number of parameters the field of ``desc`` has, counted without building it.

    A Sequential has those of its Linear layers (``layers``, built from the stored list: a
    Linear holds only its widths until a field binds it). An MLP is built from its
    ``args["sizes"]`` (and checked against the stored list afterwards), so it is counted from
    them, the way :class:`pyode.nn.MLP` lays its layers out: one Linear per consecutive pair
    of sizes, the first with one input more when ``time_input`` appends t.
    """
    if cls != "MLP":
        return sum(layer.n_params for layer in layers if isinstance(layer, nn.Linear))
    try:
        args = desc["args"]
        sizes = nn._check_sizes(args["sizes"])
        n_time = 1 if args["time_input"] is True else 0
    except (KeyError, TypeError, ValueError) as exc:
        raise SaveFormatError(name, f"the MLP arguments {desc.get('args')!r} are damaged "
                                    f"({exc})") from None
    widths_in = [sizes[0] + n_time, *sizes[1:-1]]
    return sum(n_in * n_out + n_out for n_in, n_out in zip(widths_in, sizes[1:]))


def save_model(path: str | os.PathLike, f: nn.Sequential) -> None:
    """Write the field ``f`` to ``path`` (the function behind :meth:`Sequential.save`).

    Parameters
    ----------
    path : str or os.PathLike
        Written exactly as given (no ``.npz`` appended), atomically (module docstring: a
        symbolic link's target is written; ``~`` is not expanded).
    f : pyode.nn.Sequential or pyode.nn.MLP

    Raises
    ------
    TypeError
        ``f`` is not a Sequential / MLP, or has a layer the format cannot describe.
    ValueError
        ``path`` is empty (nothing is created).
    OSError
        The file cannot be written: ``IsADirectoryError`` for a directory (before anything is
        created), ``FileNotFoundError`` for a missing directory, ``PermissionError``, a full
        disk. The message names ``path`` and the reason; the previous file is left as it was.
    """
    desc = _describe_model(f)
    arrays = {META_KEY: _meta_array(_meta(MODEL_FORMAT, model=desc)), **_model_arrays(f)}
    _atomic_savez(path, arrays)


def load_model(path: str | os.PathLike) -> nn.Sequential:
    """Read a model file (the function behind :func:`pyode.nn.load`; documented there)."""
    meta, arrays = _read_archive(path, MODEL_FORMAT)
    return _build_model(os.fspath(path), meta, meta.get("model"), arrays)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Checkpoint:
    """A training state read by :func:`load_checkpoint`.

    Attributes
    ----------
    path : str
        The file it was read from.
    model : pyode.nn.Sequential or None
        The field (an MLP if one was saved), params bit-identical to the saved ones.
    optimizer : dict or dict of str to dict or None
        What ``save_checkpoint`` got as ``optimizer``, as state dicts: one state dict for one
        optimiser, a dict name -> state dict for a dict. Restore with
        ``opt.load_state_dict(ck.optimizer)`` on an optimiser built over the loaded params
        (e.g. ``optim.Adam(ck.model.params)``).
    step : int or None
    rng : numpy.random.Generator or None
        A new Generator whose bit generator is in the saved state: it draws the same numbers
        the saved one would have drawn next.
    extra : dict
        The ``extra`` values: ndarrays (dtype and shape kept), floats, ints, bools, strings.
    pyode_version : str
        Version of pyode that wrote the file.
    """

    path: str
    model: Any = None
    optimizer: Any = None
    step: int | None = None
    rng: np.random.Generator | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    pyode_version: str = ""

    def __repr__(self):
        opt = self.optimizer
        if isinstance(opt, dict) and "kind" not in opt:
            opt = {name: state.get("kind") for name, state in opt.items()}
        elif isinstance(opt, dict):
            opt = opt.get("kind")
        return (f"Checkpoint(path={self.path!r}, model={self.model!r}, optimizer={opt!r}, "
                f"step={self.step!r}, rng={'restored' if self.rng is not None else None}, "
                f"extra keys={sorted(self.extra)!r}, pyode_version={self.pyode_version!r})")


_SCALARS = (bool, int, float, str)


def _plain(value, what):
    """``value`` as a JSON scalar (numpy scalars converted), or an ndarray; TypeError else."""
    if isinstance(value, np.ma.MaskedArray):
        # An .npz entry holds the data only: the mask would be dropped without a word.
        raise TypeError(f"{what} is a numpy.ma.MaskedArray, whose mask the file format cannot "
                        "keep; store value.filled(fill_value) and numpy.ma.getmaskarray(value) "
                        "as two entries and rebuild it with numpy.ma.array(data, mask=mask)")
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject or value.dtype.kind not in "biufcUS":
            raise TypeError(f"{what} is an array of dtype {value.dtype}, which cannot be stored "
                            "without pickle; use a numeric or string array")
        return value
    if isinstance(value, (np.datetime64, np.timedelta64)):
        # .item() would give a datetime.date, a datetime.timedelta or a bare int (ns units).
        kind = type(value).__name__
        how = ("str(value) (numpy.datetime64(text) reads it back)"
               if isinstance(value, np.datetime64) else
               "int(value.astype('int64')) and its unit, numpy.datetime_data(value.dtype)[0]")
        raise TypeError(f"{what} must be an ndarray, a float, an int, a bool, a str or None; "
                        f"got numpy.{kind} {value!r}: store {how}")
    if isinstance(value, np.generic):
        scalar = value.item()
        if scalar is None or isinstance(scalar, _SCALARS):
            return scalar
        raise TypeError(f"{what} must be an ndarray, a float, an int, a bool, a str or None; "
                        f"got numpy.{type(value).__name__} {value!r}")
    if value is None or isinstance(value, _SCALARS):
        return value
    raise TypeError(f"{what} must be an ndarray, a float, an int, a bool, a str or None; got "
                    f"{type(value).__name__} {value!r}")


def _split(mapping, prefix, what):
    """Split a dict into JSON scalars and archive arrays named ``prefix<i>``.

    Returns ``(entries, arrays)`` with ``entries`` a list of ``[key, kind, value]``: kind
    ``"array"`` with the archive name as value, or ``"scalar"`` with the value itself.
    """
    entries, arrays = [], {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise TypeError(f"{what} keys must be strings; got {type(key).__name__} {key!r}")
        value = _plain(value, f"{what}[{key!r}]")
        if isinstance(value, np.ndarray):
            name = f"{prefix}{len(arrays)}"
            arrays[name] = value
            entries.append([key, "array", name])
        else:
            entries.append([key, "scalar", value])
    return entries, arrays


def _join(name, entries, arrays, what):
    out = {}
    if not isinstance(entries, list):
        raise SaveFormatError(name, f"the {what} entry list is damaged")
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 3):
            raise SaveFormatError(name, f"a {what} entry {entry!r} is damaged")
        key, kind, value = entry
        if kind == "array":
            if value not in arrays:
                raise SaveFormatError(name, f"{what}[{key!r}] refers to a missing archive "
                                            f"entry {value!r}: the file is damaged")
            out[key] = arrays[value]
        else:
            out[key] = value
    return out


def _json_ready(obj):
    """A bit generator state (nested dicts, ints, ndarrays) as plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": obj.dtype.str}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _from_json(obj):
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__", "dtype"}:
            return np.array(obj["__ndarray__"], dtype=np.dtype(obj["dtype"]))
        return {k: _from_json(v) for k, v in obj.items()}
    return obj


def _restore_rng(name, state):
    kind = state.get("bit_generator") if isinstance(state, dict) else None
    cls = getattr(np.random, kind, None) if isinstance(kind, str) else None
    if not (isinstance(cls, type) and issubclass(cls, np.random.BitGenerator)):
        raise SaveFormatError(name, f"the random generator state names bit generator "
                                    f"{kind!r}, which this numpy {np.__version__} does not "
                                    "have: use the numpy that wrote the file")
    bit_generator = cls(0)
    try:
        bit_generator.state = _from_json(state)
    except (TypeError, ValueError, KeyError) as exc:
        raise SaveFormatError(name, f"the random generator state cannot be restored ({exc}): "
                                    "the file is damaged") from None
    return np.random.Generator(bit_generator)


def save_checkpoint(path: str | os.PathLike, *, model: nn.Sequential | None = None,
                    optimizer: Optimizer | Mapping[str, Optimizer] | None = None,
                    step: int | None = None,
                    rng: np.random.Generator | None = None,
                    extra: Mapping[str, Any] | None = None) -> None:
    """Write a whole training state to ``path`` (an ``.npz``, no pickle), atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Written exactly as given (no ``.npz`` appended): to a temporary file in the same
        directory, flushed and fsync-ed, then renamed onto ``path``. An interrupt or error
        leaves the previous file at ``path`` untouched and no temporary file behind.
    model : pyode.nn.Sequential or pyode.nn.MLP, optional
        Stored as by ``model.save`` (architecture, params in their dtype, backend).
    optimizer : pyode.optim.Optimizer or dict of str to Optimizer, optional
        Its :meth:`~pyode.optim.Optimizer.state_dict` (kind, hyper-parameters, lr, n_steps,
        buffers), or one per name (e.g. ``{"f": opt_f, "z0": opt_z0}``).
    step : int, optional
        Iteration count, ≥ 0.
    rng : numpy.random.Generator, optional
        Its bit generator's state (``rng.bit_generator.state``, as JSON), restored exactly.
    extra : dict of str to (ndarray, float, int, bool, str or None), optional
        Anything else the run needs (a learned initial state, the best loss, settings).
        Arrays keep dtype and shape; object arrays are refused, and so are masked arrays
        (``numpy.ma``: the mask would be lost; store ``value.filled(...)`` and
        ``numpy.ma.getmaskarray(value)`` as two entries). NumPy scalars are stored as the
        Python value (``np.float32(0.1)`` as ``float``); ``datetime64`` and ``timedelta64``
        are refused (store ``str(value)``).

    Raises
    ------
    TypeError
        An argument of the wrong type (the message names it), a model the format cannot
        describe, an ``extra`` value that is not an array or a scalar.
    ValueError
        ``step`` is negative, or ``path`` is empty (nothing is created).
    OSError
        The file cannot be written; as for :func:`save_model`, the message names ``path``.

    See Also
    --------
    load_checkpoint, pyode.nn.load
    """
    arrays, content = {}, {}
    if model is not None:
        if not isinstance(model, nn.Sequential):
            raise TypeError(f"model must be a pyode.nn.Sequential or MLP (or None); got "
                            f"{type(model).__name__}")
        content["model"] = _describe_model(model)
        arrays.update(_model_arrays(model))
    else:
        content["model"] = None
    content["optimizer"] = None
    if optimizer is not None:
        single = isinstance(optimizer, Optimizer)
        named = {None: optimizer} if single else optimizer
        if not isinstance(named, dict) or not all(isinstance(o, Optimizer)
                                                  for o in named.values()):
            raise TypeError(f"optimizer must be a pyode.optim.Optimizer or a dict of name -> "
                            f"Optimizer; got {type(optimizer).__name__} {optimizer!r}")
        entries = []
        for i, (key, opt) in enumerate(named.items()):
            if key is not None and not isinstance(key, str):
                raise TypeError(f"optimizer names must be strings; got {key!r}")
            state, bufs = _split(opt.state_dict(), f"optimizer.{i}.", f"optimizer[{key!r}]")
            entries.append({"name": key, "state": state})
            arrays.update(bufs)
        content["optimizer"] = {"single": single, "entries": entries}
    if step is not None and (not nn._is_int(step)):
        raise TypeError(f"step must be an int or None; got step={step!r}")
    if step is not None and step < 0:
        raise ValueError(f"step must be >= 0; got step={step}")
    content["step"] = None if step is None else int(step)
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)) or "
                        f"None; got {type(rng).__name__}")
    content["rng"] = None if rng is None else _json_ready(rng.bit_generator.state)
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict of str -> value; got {type(extra).__name__}")
    content["extra"], extra_arrays = _split(extra or {}, "extra.", "extra")
    arrays.update(extra_arrays)
    arrays[META_KEY] = _meta_array(_meta(CHECKPOINT_FORMAT, **content))
    _atomic_savez(path, arrays)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a training state written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : str or os.PathLike
        Read with ``numpy.load(path, allow_pickle=False)``.

    Returns
    -------
    Checkpoint
        ``model``, ``optimizer`` (state dicts), ``step``, ``rng`` (a restored Generator),
        ``extra``, ``path`` and ``pyode_version``; attributes not saved are None (``extra``
        an empty dict).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    pyode.SaveFormatError
        Not a pyode checkpoint: not an ``.npz``, a foreign ``.npz``, a model file (read those
        with :func:`pyode.nn.load`), a newer format version, or damaged. The message names
        the file, the problem and the fix.

    Examples
    --------
    Resume training where it stopped::

        ck = pyode.load_checkpoint("out/run_checkpoint.npz")
        f, rng = ck.model, ck.rng
        opt = optim.Adam(f.params)
        opt.load_state_dict(ck.optimizer)
        for it in range(ck.step + 1, n_iters + 1):
            ...
    """
    name = os.fspath(path)
    meta, arrays = _read_archive(path, CHECKPOINT_FORMAT)
    ck = Checkpoint(path=name, pyode_version=str(meta.get("pyode_version", "")))
    if meta.get("model") is not None:
        ck.model = _build_model(name, meta, meta["model"], arrays)
    opt = meta.get("optimizer")
    if opt is not None:
        try:
            states = {entry["name"]: _join(name, entry["state"], arrays, "optimizer")
                      for entry in opt["entries"]}
            ck.optimizer = states[None] if opt["single"] else states
        except (KeyError, TypeError) as exc:
            raise SaveFormatError(name, f"the optimizer entry is damaged ({exc!r})") from None
    step = meta.get("step")
    if step is not None and not nn._is_int(step):
        raise SaveFormatError(name, f"step {step!r} is not an integer: the file is damaged")
    ck.step = step
    if meta.get("rng") is not None:
        ck.rng = _restore_rng(name, meta["rng"])
    ck.extra = _join(name, meta.get("extra", []), arrays, "extra")
    return ck
