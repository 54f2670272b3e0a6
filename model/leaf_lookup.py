"""A LightGBM booster's leaf indices for one deal at a time, through the C API's single-row fast path.

`Booster.predict` sets up a new predictor on every call (configuration parsing, buffers, a Python-side
copy of the parameters): for one deal that setup is most of the call. LightGBM's C API has a variant
for exactly this case: `LGBM_BoosterPredictForMatSingleRowFastInit` does the setup once and returns a
handle, and `LGBM_BoosterPredictForMatSingleRowFast` then predicts one row with it. Measured on the demo
model (145 trees, 29 features): 13 us per deal against 50 us for `predict(pred_leaf=True)` on one row.

A handle is not shared between threads (LightGBM's own multi-threaded test gives each thread its own),
so each thread that scores gets one, set up on its first use. The functions are reached through the
library LightGBM's Python package has already loaded (`lightgbm.basic._LIB`, not a public name): if
a later LightGBM moves it, `SingleRowLeaves.available` is False and callers use `predict`.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_PREDICT_LEAF_INDEX = 2  # C_API_PREDICT_LEAF_INDEX in LightGBM's c_api.h
_DTYPE_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


def _library() -> Any:
    try:
        import lightgbm
        from lightgbm import basic
    except ImportError:  # pragma: no cover - lightgbm is a dependency
        return None
    # The C functions are called without declared signatures: only with the major version whose argument
    # lists this module was written and tested against (4.x); another one uses `predict` until checked.
    if not str(getattr(lightgbm, "__version__", "")).startswith("4."):
        return None
    lib = getattr(basic, "_LIB", None)
    needed = ("LGBM_BoosterPredictForMatSingleRowFastInit", "LGBM_BoosterPredictForMatSingleRowFast",
              "LGBM_FastConfigFree", "LGBM_GetLastError")
    if lib is None or not all(hasattr(lib, name) for name in needed):
        return None
    return lib


class _FastConfig:
    """One thread's set-up predictor for one booster; freed with it (and keeps the booster alive till then)."""

    def __init__(self, lib: Any, booster: Any) -> None:
        self._lib = lib
        self._booster = booster  # the handle below points into this booster: it must outlive the handle
        self.n_features = int(booster.num_feature())
        # Booster.predict's default: the early-stopping round's trees when there is one, all trees otherwise.
        num_iteration = booster.best_iteration if booster.best_iteration > 0 else -1
        per_iteration = int(booster.num_model_per_iteration())
        used = num_iteration if num_iteration > 0 else int(booster.num_trees()) // per_iteration
        self.n_trees = used * per_iteration
        # LightGBM writes as many leaf indices as the booster's current prediction setting says, which any
        # `predict(num_iteration=...)` on the same booster changes after this set-up: the buffer holds every
        # tree (the most it can ever write), and `leaves` checks that exactly `n_trees` were written.
        self._capacity = int(booster.num_trees())
        self._handle = ctypes.c_void_p()
        _check(lib, lib.LGBM_BoosterPredictForMatSingleRowFastInit(
            booster._handle, ctypes.c_int(_PREDICT_LEAF_INDEX), ctypes.c_int(0), ctypes.c_int(num_iteration),
            ctypes.c_int(_DTYPE_FLOAT64), ctypes.c_int32(self.n_features), ctypes.c_char_p(b"num_threads=1"),
            ctypes.byref(self._handle)))
        self._out = np.empty(self._capacity, dtype=np.float64)  # n_trees <= every tree
        self._out_pointer = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._out_len = ctypes.c_int64()
        # The row is copied into a buffer of this thread's whose address is taken once: `row.ctypes.data` and
        # the ctypes wrappers around it cost ~2 us a call, more than the copy of a few dozen floats.
        self._row = np.empty(self.n_features, dtype=np.float64)
        self._row_pointer = ctypes.c_void_p(self._row.ctypes.data)
        self._out_len_ref = ctypes.byref(self._out_len)

    def leaves(self, row: FloatArray) -> FloatArray | None:
        """The leaf index per tree for one row of features (as floats: LightGBM's output buffer), or None
        when LightGBM did not write exactly one index per tree (the caller then asks `predict`)."""
        self._row[:] = row  # the caller checked its length; float64 as the predictor was set up for
        self._out.fill(-1.0)  # leaf indices are >= 0: what is still -1 afterwards was not written
        _check(self._lib, self._lib.LGBM_BoosterPredictForMatSingleRowFast(
            self._handle, self._row_pointer, self._out_len_ref, self._out_pointer))
        written = self._out[:self.n_trees]
        if self._out_len.value != self.n_trees or written.min(initial=0.0) < 0.0 or \
                (self._out[self.n_trees:] != -1.0).any():
            return None
        return written

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None and handle.value:
            self._lib.LGBM_FastConfigFree(handle)
            handle.value = None


def _check(lib: Any, status: int) -> None:
    if status != 0:  # LightGBM's package declares LGBM_GetLastError as returning a C string (bytes)
        message = lib.LGBM_GetLastError()
        raise RuntimeError(f"LightGBM: {message.decode(errors='replace') if isinstance(message, bytes) else message}")


class SingleRowLeaves:
    """Leaf indices of a few deals, one fast single-row call per deal, one set-up predictor per thread."""

    def __init__(self, booster: Any) -> None:
        self._booster = booster
        self._lib = _library()
        self._per_thread = threading.local()

    @property
    def available(self) -> bool:
        return self._lib is not None

    def __call__(self, features: FloatArray) -> npt.NDArray[np.intp]:
        """(deals, trees) leaf indices, as `booster.predict(features, pred_leaf=True)` gives them."""
        config: _FastConfig | None = getattr(self._per_thread, "config", None)
        if config is None:
            config = self._per_thread.config = _FastConfig(self._lib, self._booster)
        if features.ndim != 2 or features.shape[1] != config.n_features:
            raise ValueError(f"expected (deals, {config.n_features}) features, got shape {features.shape}")
        out = np.empty((features.shape[0], config.n_trees), dtype=np.intp)
        for i in range(features.shape[0]):
            leaves = config.leaves(features[i])
            if leaves is None:  # the booster's prediction setting changed under the set-up: ask predict
                return np.asarray(self._booster.predict(features, pred_leaf=True, num_threads=1), dtype=np.intp)
            out[i] = leaves
        return out
