"""Safe loading of mmengine runner checkpoints with ``weights_only=True``.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: it only
rebuilds tensors, containers and explicitly allow-listed globals.
mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, so resuming
or loading a full runner checkpoint fails, because such a checkpoint also
holds the message hub (``HistoryBuffer`` objects that carry numpy arrays
and a table of their statistics methods) and numpy scalars.

This module keeps ``weights_only=True`` and adds an explicit, minimal
allow-list of exactly those types, found by saving real runner checkpoints
(AdamW, LinearLR + MultiStepLR, CheckpointHook) and asking torch which
globals they use:

* ``mmengine.logging.history_buffer.HistoryBuffer``;
* ``numpy.ndarray``, ``numpy.dtype`` and the concrete numeric and string
  dtype classes
  (``numpy.dtypes.Float64DType`` ...; a dtype's pickled state is applied to
  an instance of that class), plus ``numpy.core.multiarray._reconstruct``
  and ``numpy.core.multiarray.scalar`` under both their numpy 1
  (``numpy.core``) and numpy 2 (``numpy._core``) names;
* ``builtins.getattr``, which ``HistoryBuffer`` pickles use to refer to its
  statistics methods (``getattr(HistoryBuffer, 'mean')``). The real
  ``getattr`` would let a file walk from any allow-listed object to
  arbitrary module globals, so it is mapped to :func:`_restricted_getattr`,
  which only returns public functions defined on ``HistoryBuffer``.

``collections.OrderedDict``/``Counter`` (scheduler milestones), tensors,
``torch.Size`` and builtin containers are accepted by torch by default.

:func:`apply_safe_checkpoint_loading` (run by ``import monoasd``) replaces
mmengine's loader for local paths (``CheckpointLoader`` scheme ``''``, which
matches any path no other scheme claims). ``Runner.load_checkpoint``,
``Runner.resume``/``load_or_resume``, ``load_from``,
``mmengine.runner.load_checkpoint`` and ``init_cfg=dict(type='Pretrained')``
all reach it through ``CheckpointLoader.load_checkpoint``. The allow-list is
only active inside that loader (``torch.serialization.safe_globals``), so
plain ``torch.load`` calls elsewhere are unaffected. A file that uses any
other global is refused with :class:`UnsafeCheckpointError`, which names
the file and the global; trusted plain-data types can be added with
:func:`add_checkpoint_safe_globals`.
"""
import inspect
import os.path as osp
import pickle
import re
from typing import Any, Callable, List, Optional, Tuple, Union

import torch

SafeGlobal = Union[Callable, Tuple[Callable, str]]

# Types added at run time through add_checkpoint_safe_globals().
_EXTRA_SAFE_GLOBALS: List[SafeGlobal] = []
_APPLIED = False

_REJECTED_PATTERNS = (
    r'GLOBAL (\S+) was not an allowed global',
    r'unsupported GLOBAL (\S+) whose module',
    r'unrecognized function (.+?)(?: which belongs|$)',
    r'allowlisted via `add_safe_globals` but got (.+?)$',
    r'types allowlisted via `add_safe_globals`, but got (.+?)$',
    r'(getattr\(.+?\)) is not allowed',
)


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint uses a global outside MonoASD's allow-list."""


def _restricted_getattr(obj: Any, name: str) -> Any:
    """``getattr`` limited to the statistics methods of ``HistoryBuffer``.

    Stands in for ``builtins.getattr`` while unpickling checkpoints.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if (obj is HistoryBuffer and isinstance(name, str)
            and not name.startswith('_')
            and inspect.isfunction(vars(HistoryBuffer).get(name))):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed by MonoASD\'s '
        'checkpoint loader (only HistoryBuffer statistics methods are)')


def _numpy_safe_globals() -> List[SafeGlobal]:
    """numpy types that mmengine's message hub puts into checkpoints."""
    import numpy as np
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 1.26 has no numpy._core
        from numpy.core import multiarray
    entries: List[SafeGlobal] = [np.ndarray, np.dtype]
    for func in (multiarray._reconstruct, multiarray.scalar):
        for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            entries.append((func, f'{module}.{func.__name__}'))
    # numpy >= 1.25 gives every dtype its own class (numpy.dtypes.*DType);
    # unpickling a dtype applies its state to an instance of that class.
    # 'U'/'S': numpy string scalars (``np.str_`` keys of mmdet3d's info
    # metainfo travel into ``meta['dataset_meta']``).
    for code in '?bBhHiIlLqQefdgFDGUS':
        dtype_cls = type(np.dtype(code))
        if dtype_cls is not np.dtype and dtype_cls not in entries:
            entries.append(dtype_cls)
    return entries


def checkpoint_safe_globals() -> List[SafeGlobal]:
    """Return MonoASD's checkpoint allow-list (defaults plus additions).

    Returns:
        list: Entries in the format of ``torch.serialization.safe_globals``.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    entries: List[SafeGlobal] = [HistoryBuffer,
                                 (_restricted_getattr, 'builtins.getattr')]
    entries += _numpy_safe_globals()
    entries += [g for g in _EXTRA_SAFE_GLOBALS if g not in entries]
    return entries


def add_checkpoint_safe_globals(*safe_globals: SafeGlobal) -> None:
    """Extend MonoASD's checkpoint allow-list.

    Only add plain-data types from trusted code: unpickling may call their
    constructor and ``__setstate__``.

    Args:
        *safe_globals: Classes or functions, or ``(obj, 'module.name')``
            tuples for objects pickled under another name, as accepted by
            ``torch.serialization.safe_globals``.
    """
    for entry in safe_globals:
        if isinstance(entry, tuple):
            if (len(entry) != 2 or not callable(entry[0])
                    or not isinstance(entry[1], str)):
                raise TypeError('expected (callable, "module.name"), got '
                                f'{entry!r}')
        elif not callable(entry):
            raise TypeError(f'expected a class or function, got {entry!r}')
        if entry not in _EXTRA_SAFE_GLOBALS:
            _EXTRA_SAFE_GLOBALS.append(entry)


def _global_name(entry: SafeGlobal) -> str:
    if isinstance(entry, tuple):
        return entry[1]
    return f'{entry.__module__}.{entry.__qualname__}'


def _unpickler_reason(message: str) -> str:
    """The unpickler's own sentence from torch's long weights_only error."""
    for line in message.splitlines():
        line = line.strip()
        if line.startswith('WeightsUnpickler error:'):
            line = line[len('WeightsUnpickler error:'):].strip()
        if any(key in line for key in ('GLOBAL', 'getattr(', 'unrecognized',
                                       'Can only')):
            return line
    return message.strip().splitlines()[-1] if message.strip() else ''


def _rejected_globals(filename: str, message: str) -> List[str]:
    """Name the globals that made loading ``filename`` fail."""
    names: List[str] = []
    for pattern in _REJECTED_PATTERNS:
        match = re.search(pattern, message, flags=re.MULTILINE)
        if match:
            names.append(match.group(1).strip())
            break
    try:  # every other global of the file that is not allow-listed
        allowed = {_global_name(g) for g in checkpoint_safe_globals()}
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(
            filename)
        names += [n for n in unsafe if n not in allowed and n not in names]
    except Exception:  # not a zip checkpoint: keep what the message says
        pass
    return names


def safe_torch_load(filename: str,
                    map_location: Optional[Any] = None) -> Any:
    """``torch.load(weights_only=True)`` with MonoASD's allow-list.

    Args:
        filename (str): Local checkpoint path.
        map_location: Same as for :func:`torch.load`.

    Returns:
        The unpickled checkpoint.

    Raises:
        UnsafeCheckpointError: The file uses a global outside the
            allow-list; nothing of it was executed.
    """
    current = set(torch.serialization.get_safe_globals())
    # Only add what is missing, so that leaving the context does not drop
    # globals the user allow-listed process-wide beforehand.
    missing = [g for g in checkpoint_safe_globals() if g not in current]
    try:
        with torch.serialization.safe_globals(missing):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        rejected = _rejected_globals(filename, str(exc))
        first = rejected[0] if rejected else 'a global'
        raise UnsafeCheckpointError(
            f'Refusing to load checkpoint {filename!r}: it references '
            f'{first}, which is not in MonoASD\'s checkpoint allow-list '
            '(torch.load with weights_only=True; not allow-listed in this '
            f'file: {", ".join(rejected) or "unknown"}). Nothing from the '
            'file was executed. If you trust the file and these are '
            'plain-data types, allow them with monoasd.utils.'
            'add_checkpoint_safe_globals(<type>, ...) before loading '
            '(modules such as os/sys stay blocked by torch). Unpickler: '
            f'{_unpickler_reason(str(exc))}') from None


def load_from_local_safe(filename: str,
                         map_location: Optional[Any] = None) -> Any:
    """mmengine ``CheckpointLoader`` backend for local files.

    Replaces mmengine's ``load_from_local``: same path handling, but
    unpickles through :func:`safe_torch_load`.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_torch_load(filename, map_location=map_location)


def apply_safe_checkpoint_loading() -> None:
    """Register :func:`load_from_local_safe` for local checkpoint paths.

    Idempotent. mmengine picks the first scheme prefix (longest first) that
    ``re.match``-es the path; the empty prefix matches every path, so it
    serves all local files.
    """
    global _APPLIED
    if _APPLIED:
        return
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local_safe, force=True)
    _APPLIED = True


def save_checkpoint_atomic(checkpoint: Any, filename: str) -> None:
    """``torch.save`` to a temporary file beside ``filename``, then rename,
    so an interrupted write never leaves a truncated checkpoint."""
    import os
    import tempfile
    out_dir = osp.dirname(osp.abspath(filename))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix='.tmp')
    os.close(fd)
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, filename)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
