"""libnftables through ctypes: run nftables command text in-process.

One context per :class:`Nftables`; calls are serialised by a lock (a context
is not thread-safe). Commands run in the calling thread's network namespace,
which for the agent is always the node's own (DESIGN.md rule 10).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading

import orjson

from agent.errors import DataplaneError, FatalError

_lib = None


def _load():
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            raise FatalError(f"libnftables is not available: {e}",
                             hint="apt-get install nftables") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
        for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
            getattr(lib, fn).restype = ctypes.c_char_p
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
        _lib = lib
    return _lib


NFT_CTX_OUTPUT_JSON = 1 << 4


class Nftables:
    def __init__(self) -> None:
        self._lib = _load()
        self._ctx = self._lib.nft_ctx_new(0)
        self._lib.nft_ctx_buffer_output(self._ctx)
        self._lib.nft_ctx_buffer_error(self._ctx)
        self._lock = threading.Lock()

    def run(self, text: str, *, json_output: bool = False) -> str:
        """Run command text as one transaction; returns the output (JSON text
        with ``json_output``). Raises DataplaneError with nft's message."""
        return self._run(text, json_output).decode(errors="replace")

    def _run(self, text: str, json_output: bool) -> bytes:
        with self._lock:
            flags = self._lib.nft_ctx_output_get_flags(self._ctx)
            want = (flags | NFT_CTX_OUTPUT_JSON) if json_output else (flags & ~NFT_CTX_OUTPUT_JSON)
            self._lib.nft_ctx_output_set_flags(self._ctx, want)
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, text.encode())
            out = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        if rc != 0:
            first = next((ln for ln in err.splitlines() if ln.startswith("Error")), err.strip()[:300])
            raise DataplaneError(f"nftables: {first}", op="nft", args={"commands": text[:2000],
                                                                      "error": err[:2000]})
        return out

    def list_json(self, what: str) -> list[dict]:
        """``list <what>`` as parsed JSON objects (empty list if it does not exist)."""
        try:
            out = self._run(f"list {what}", True)
        except DataplaneError as e:
            if "No such file or directory" in e.args_.get("error", ""):
                return []
            raise
        if not out.strip():
            return []
        try:  # orjson: this listing is tens of megabytes at 10,000 Services
            doc = orjson.loads(out)
        except orjson.JSONDecodeError:  # e.g. a foreign comment that is not UTF-8
            import json  # noqa: PLC0415
            doc = json.loads(out.decode(errors="replace"))
        return doc.get("nftables", [])

    def close(self) -> None:
        with self._lock:
            if self._ctx:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None
