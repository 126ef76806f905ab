"""What the example scripts share: argument checks, paths given on the command line, optional
packages, and the end of a run stopped by Ctrl-C or SIGTERM (:mod:`pyode.interrupt`).

Every problem with what the user typed ends the script the way :meth:`argparse.ArgumentParser.error`
does: one line ``PROG: error: argument --flag: ...`` naming the flag, the value and the fix, and
exit status 2. Not part of pyode's API: the scripts import it from their own folder.
"""
import argparse
import math
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from pyode import interrupt

#: Exit status of a command-line mistake (argparse's).
USAGE_ERROR = 2


def error(message):
    """End the script like ``parser.error`` (without the usage line): ``PROG: error: ...``,
    exit status 2. For mistakes found after parsing (the content of a file given)."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(USAGE_ERROR)


# -- argparse types: argparse prefixes "argument --flag: " to the message ---------------------


def positive_int(text):
    """An int ≥ 1 (``type=`` of argparse)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1, 2, ...); got {text!r}")
    return value


def nonnegative_int(text):
    """An int ≥ 0 (``type=`` of argparse), e.g. a seed."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (0, 1, 2, ...); got {text!r}")
    return value


def positive_float(text):
    """A finite float > 0 (``type=`` of argparse), e.g. a learning rate."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 (e.g. 1e-3); got {text!r}")
    return value


# -- optional packages and paths --------------------------------------------------------------


def require(parser, module, extra, why):
    """Refuse to start without ``module``: ``parser.error`` with the pip command of ``extra``.

    Called after parsing, so that ``--help`` works without it, and before any training, so
    that a missing package does not end a finished run.
    """
    try:
        __import__(module)
    except ImportError as exc:
        parser.error(f"{why} needs {module}, which cannot be imported ({exc}): "
                     f"pip install 'pyode[{extra}]' (from a clone: pip install -e '.[{extra}]')")


def require_matplotlib(parser):
    """:func:`require` for the figures (extra ``plot``)."""
    require(parser, "matplotlib", "plot", "the figure")


def output_dir(parser, path, flag="--out", default_note=""):
    """Create the output directory ``path`` if missing and check that it can be written.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    path : pathlib.Path
    flag : str
        The option that names it, for the message.
    default_note : str
        How ``path`` was chosen when the user did not give it (e.g. "the checkpoint's
        directory"); the message then says so and how to pick another.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    where = (f"{default_note} {path}" if default_note else str(path))
    fix = f"pass {flag} DIR" if default_note else f"pass a directory to {flag}"
    if path.exists() and not path.is_dir():
        parser.error(f"argument {flag}: {where} is a file, not a directory; {fix} (it is "
                     "created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):     # can files be created there?
            pass
    except OSError as exc:
        blocker = _blocking_parent(path)
        reason = (f"{blocker} is a file" if blocker is not None
                  else exc.strerror or str(exc))
        parser.error(f"argument {flag}: cannot write to {where} ({reason}); {fix} that can "
                     "be written")
    return path


def _blocking_parent(path):
    """The nearest existing ancestor of ``path`` that is a file, if any (the usual reason a
    directory cannot be created)."""
    for parent in [path, *path.parents]:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def input_file(parser, path, flag, wanted):
    """Check that ``path`` names an existing file; ``parser.error`` naming ``wanted`` else.

    A directory gets the hint of the file inside it when one of the names in ``wanted`` is
    there (``wanted`` is a list of file names, the first the most likely).
    """
    what = " or ".join(wanted)
    if path.is_dir():
        inside = [path / name for name in wanted if (path / name).is_file()]
        hint = f"pass {inside[0]}" if inside else f"pass the file ({what}) inside it"
        parser.error(f"argument {flag}: {path} is a directory; {hint}")
    if not path.exists():
        parser.error(f"argument {flag}: no file {path}; pass an existing {what} (written by "
                     "a run of this script)")
    return path


def file_error(flag, path, exc, accepted):
    """End the script for a file given with ``flag`` that could not be read.

    ``exc`` is the OSError or pyode.SaveFormatError of the reader; ``accepted`` says which
    files the option takes.
    """
    if isinstance(exc, OSError):
        reason = f"cannot read it ({exc.strerror or exc})"
    else:
        reason = getattr(exc, "problem", str(exc))
    error(f"argument {flag}: {path}: {reason}; pass {accepted}")


def copy_file(src, dst):
    """Copy ``src`` onto ``dst`` atomically (through a temporary file beside ``dst``)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dst)),
                               prefix=f".{Path(dst).name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def same_file(a, b):
    """Whether the paths ``a`` and ``b`` name the same existing file."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# -- the end of an interrupted run ------------------------------------------------------------


def attempt(action, what):
    """Run ``action()``; return ``""`` or, when it raises, a note for the one-line message.

    For the figure of an interrupted run: a Ctrl-C during the first solve can leave Numba
    half-imported, so drawing the model can fail where the (pure NumPy) checkpoint did not.
    """
    try:
        action()
    except Exception as exc:       # any failure is reported in one line; the run is over
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return (f"; could not write {what} ({type(exc).__name__}: {exc}, at "
                f"{Path(last.filename).name}:{last.lineno})")
    return ""


def interrupted_by():
    """``" (SIGTERM)"`` or ``" (Ctrl-C)"``: what stopped the run, for messages."""
    name = interrupt.describe(interrupt.requested())
    return f" ({name})" if name else ""


def exit_interrupted(message):
    """Print the one-line ``message`` on stderr and exit with status 130."""
    print(message, file=sys.stderr)
    raise SystemExit(interrupt.EXIT_STATUS)


def run(name, main):
    """Call ``main()`` as the script's entry point.

    A Ctrl-C or SIGTERM outside the training loop (while the data load, or during the final
    writes, which are atomic) ends with one line and status 130 instead of a traceback; so
    does an OSError about a file (a disk that filled up during the run), with status 1.
    """
    try:
        main()
    except KeyboardInterrupt:
        exit_interrupted(f"{name}: interrupted{interrupted_by()} outside the training loop; "
                         "files already written are complete (writes are atomic)")
    except OSError as exc:
        if exc.filename is None:      # not about a file: keep the traceback
            raise
        raise SystemExit(f"{name}: {exc}") from None
