"""A small reader for MATLAB level-5 MAT-files (no scipy needed).

Enough for annotation files such as Cars196's `cars_annos.mat`: numeric,
logical, char, cell and struct arrays, zlib-compressed or not, either byte
order. Sparse, object and function-handle arrays, and v7.3 (HDF5) files, are
refused with a clear error. Written from MathWorks' "MAT-File Format"
(level 5) description.
"""

import struct
import zlib

import numpy as np

# Data element types (miXXX).
_MI_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4",
              9: "f8", 12: "i8", 13: "u8", 16: "u1", 17: "u2", 18: "u4"}
_MI_MATRIX = 14
_MI_COMPRESSED = 15
_MI_UTF8, _MI_UTF16, _MI_UTF32 = 16, 17, 18
# Array classes (mxXXX_CLASS).
_MX_CELL, _MX_STRUCT, _MX_OBJECT, _MX_CHAR, _MX_SPARSE = 1, 2, 3, 4, 5
_MX_DTYPES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2",
              12: "i4", 13: "u4", 14: "i8", 15: "u8"}
_MX_NAMES = {_MX_OBJECT: "object", _MX_SPARSE: "sparse", 16: "function"}


class MatFileError(ValueError):
    """A MAT-file this reader cannot parse; the message names the file."""


class _Reader:

    def __init__(self, data, endian, path):
        self.data = data
        self.endian = endian
        self.path = path

    def fail(self, message):
        raise MatFileError(f"MAT-file {self.path!r}: {message}")

    def tag(self, pos):
        """Returns (type, nbytes, data_start, next_element_pos)."""
        if pos + 8 > len(self.data):
            self.fail(f"truncated data element tag at byte {pos}")
        mtype, nbytes = struct.unpack_from(self.endian + "II", self.data, pos)
        if mtype >> 16:  # small data element: 4 data bytes inside the tag
            return mtype & 0xFFFF, mtype >> 16, pos + 4, pos + 8
        start = pos + 8
        end = start + nbytes
        if end > len(self.data):
            self.fail(f"data element at byte {pos} ({nbytes} bytes) runs "
                      "past the end of the file (truncated?)")
        if mtype == _MI_COMPRESSED:
            return mtype, nbytes, start, end
        return mtype, nbytes, start, end + (-nbytes % 8)

    def numbers(self, pos):
        """Reads one numeric/text data element; returns (array, type, next)."""
        mtype, nbytes, start, nxt = self.tag(pos)
        if mtype not in _MI_DTYPES:
            self.fail(f"unexpected data type {mtype} at byte {pos}")
        dtype = np.dtype(_MI_DTYPES[mtype]).newbyteorder(self.endian)
        raw = self.data[start:start + nbytes]
        return np.frombuffer(raw, dtype=dtype), mtype, nxt

    def element(self, pos):
        """Reads one top-level element: returns (name, value, next)."""
        mtype, nbytes, start, nxt = self.tag(pos)
        if mtype == _MI_COMPRESSED:
            try:
                inner = zlib.decompress(self.data[start:start + nbytes])
            except zlib.error as e:
                self.fail(f"corrupt compressed element at byte {pos}: {e}")
            name, value, _ = _Reader(inner, self.endian, self.path).element(0)
            return name, value, nxt
        if mtype != _MI_MATRIX:
            return None, None, nxt  # not a variable: skip
        name, value = self.matrix(start, nbytes)
        return name, value, nxt

    def matrix(self, start, nbytes):
        """Parses the body of a miMATRIX element: returns (name, value)."""
        if nbytes == 0:  # an empty cell / field
            return "", np.zeros((0, 0))
        flags, _, pos = self.numbers(start)
        mx_class = int(flags[0]) & 0xFF
        is_complex = bool(int(flags[0]) & 0x800)
        is_logical = bool(int(flags[0]) & 0x200)
        dims, _, pos = self.numbers(pos)
        dims = tuple(int(d) for d in dims)
        raw_name, _, pos = self.numbers(pos)
        name = raw_name.tobytes().decode("ascii", "replace")
        count = int(np.prod(dims))
        if mx_class in _MX_DTYPES:
            real, _, pos = self.numbers(pos)
            value = real.astype(_MX_DTYPES[mx_class])
            if is_complex:
                imag, _, pos = self.numbers(pos)
                value = value + 1j * imag
            value = value.reshape(dims, order="F")
            return name, value.astype(bool) if is_logical else value
        if mx_class == _MX_CHAR:
            codes, mtype, pos = self.numbers(pos)
            if mtype == _MI_UTF8:
                text = codes.tobytes().decode("utf-8")
            elif mtype == _MI_UTF32:
                text = "".join(chr(c) for c in codes)
            else:  # UCS-2 code units (miUINT16, or miUINT8 for ASCII)
                text = "".join(chr(c) for c in codes)
            if len(dims) == 2 and dims[0] <= 1:
                return name, text
            chars = np.array(list(text), dtype=object).reshape(dims, order="F")
            return name, np.array(["".join(row) for row in chars])
        if mx_class == _MX_CELL:
            cells = np.empty(count, dtype=object)
            for i in range(count):
                _, cells[i], pos = self.element(pos)
            return name, cells.reshape(dims, order="F")
        if mx_class == _MX_STRUCT:
            length, _, pos = self.numbers(pos)
            raw, _, pos = self.numbers(pos)
            length = int(length[0])
            blob = raw.tobytes()
            fields = [blob[i:i + length].split(b"\0")[0].decode("ascii")
                      for i in range(0, len(blob), length)] if length else []
            records = np.empty(count, dtype=object)
            for i in range(count):
                record = {}
                for field in fields:
                    _, record[field], pos = self.element(pos)
                records[i] = record
            return name, records.reshape(dims, order="F")
        kind = _MX_NAMES.get(mx_class, f"class {mx_class}")
        self.fail(f"variable {name!r} is a {kind} array, which this reader "
                  "does not support")


def load_mat(path):
    """Reads a level-5 MAT-file.

    Args:
        path: the `.mat` file.

    Returns:
        A dict from variable name to value: numeric and logical arrays as
        numpy arrays of their MATLAB shape (column-major order respected);
        a char row as a `str` (a char matrix as an array of row strings);
        a cell array as an object array; a struct array as an object array
        of dicts (field name -> value).

    Raises:
        FileNotFoundError: the file does not exist.
        MatFileError: the file is not a level-5 MAT-file or is corrupt, or
            holds a sparse/object array; the message names the file.
    """
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 128:
        raise MatFileError(f"MAT-file {path!r}: too short for a MAT-file "
                           f"header ({len(data)} bytes)")
    text = data[:116].decode("latin-1")
    if data[126:128] == b"IM":
        endian = "<"
    elif data[126:128] == b"MI":
        endian = ">"
    elif text.startswith("MATLAB 7.3"):
        raise MatFileError(f"MAT-file {path!r} is a v7.3 (HDF5) file: "
                           "read it with h5py, or re-save it with -v7")
    else:
        raise MatFileError(f"MAT-file {path!r}: not a level-5 MAT-file "
                           "(bad header; level-4 files are not supported)")
    if text.startswith("MATLAB 7.3"):
        raise MatFileError(f"MAT-file {path!r} is a v7.3 (HDF5) file: "
                           "read it with h5py, or re-save it with -v7")
    reader = _Reader(data, endian, path)
    variables = {}
    pos = 128
    while pos < len(data):
        name, value, pos = reader.element(pos)
        if name:
            variables[name] = value
    return variables
