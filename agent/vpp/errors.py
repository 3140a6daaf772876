"""Typed errors of the VPP data plane.

Each class derives from the project's base class that decides what happens
next (DESIGN.md rule 6, ``agent/errors.py``):

* :class:`VppMessageInvalid` (``InvalidInput``): a message does not match the
  VPP API definitions (unknown message or field, wrong type, value out of
  range...). It was never sent; retrying cannot help.
* :class:`VppApiError` (``DataplaneError``, retried with backoff): VPP
  answered with ``retval != 0``. Carries the message name, the arguments,
  the retval and VPP's name for it when known.
* :class:`VppUnavailable` (``Unavailable``, retried): no API socket, VPP
  down or restarting, or the socket is not VPP's.
* :class:`VppVersionMismatch` (``FatalError``): the connected VPP lacks a
  message the agent needs, or has it with a different CRC (another layout).
"""
from __future__ import annotations

from typing import Any, Mapping

from agent.errors import DataplaneError, FatalError, InvalidInput, Unavailable

# VPP's error numbers (vnet api errno) that the agent is likely to meet, with
# VPP's own names, so that a failure reads "NO_SUCH_ENTRY" rather than "-6".
# Not exhaustive: an unknown number is reported as a number.
VPP_ERRORS: dict[int, str] = {
    -1: "UNSPECIFIED", -2: "INVALID_SW_IF_INDEX", -3: "NO_SUCH_FIB",
    -4: "NO_SUCH_INNER_FIB", -5: "NO_SUCH_LABEL", -6: "NO_SUCH_ENTRY",
    -7: "INVALID_VALUE", -8: "INVALID_VALUE_2", -9: "UNIMPLEMENTED",
    -10: "INVALID_SW_IF_INDEX_2", -11: "SYSCALL_ERROR_1", -12: "SYSCALL_ERROR_2",
    -13: "SYSCALL_ERROR_3", -30: "FEATURE_DISABLED", -31: "INVALID_REGISTRATION",
    -50: "NEXT_HOP_NOT_IN_FIB", -51: "UNKNOWN_DESTINATION", -52: "NO_PATHS_IN_ROUTE",
    -53: "NEXT_HOP_NOT_FOUND_MP", -55: "INVALID_VLAN", -56: "VLAN_ALREADY_EXISTS",
    -57: "INVALID_SRC_ADDRESS", -58: "INVALID_DST_ADDRESS",
    -59: "ADDRESS_LENGTH_MISMATCH", -60: "ADDRESS_NOT_FOUND_FOR_INTERFACE",
    -61: "ADDRESS_NOT_DELETABLE", -62: "IP6_NOT_ENABLED", -63: "NO_SUCH_NODE",
    -65: "NO_SUCH_TABLE", -68: "SUBIF_ALREADY_EXISTS", -71: "INVALID_INTERFACE",
    -73: "INVALID_ARGUMENT", -75: "TUNNEL_EXIST", -79: "IF_ALREADY_EXISTS",
    -81: "VALUE_EXIST", -97: "INVALID_ADDRESS_FAMILY", -105: "ADDRESS_IN_USE",
    -106: "ADDRESS_NOT_IN_USE", -116: "ENTRY_ALREADY_EXISTS",
    -119: "BD_ALREADY_EXISTS", -120: "BD_IN_USE", -121: "BD_NOT_MODIFIABLE",
    -122: "BD_ID_EXCEED_MAX", -126: "UNSUPPORTED", -142: "ACL_IN_USE_INBOUND",
    -143: "ACL_IN_USE_OUTBOUND", -147: "INSTANCE_IN_USE",
    -152: "BD_ALREADY_HAS_BVI", -155: "RSRC_IN_USE",
    -157: "FIB_PATH_UNSUPPORTED_NH_PROTO", -160: "NO_CHANGE", -165: "EAGAIN",
    -167: "BUSY", -169: "FEATURE_ALREADY_DISABLED",
}


def error_name(retval: int) -> str | None:
    """VPP's name for a retval (``-2`` -> ``"INVALID_SW_IF_INDEX"``), if known."""
    return VPP_ERRORS.get(retval)


def _short(args: dict, limit: int = 200) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class VppMessageInvalid(InvalidInput):
    """A message does not fit the VPP API definitions; it was not sent.

    ``message_name`` is the API message, ``field`` the dotted path of the bad
    field (``route.paths[0].label_stack``; None when the message itself is
    wrong) and ``reason`` what is wrong with it.
    """

    def __init__(self, message_name: str, field: str | None, reason: str,
                 *, hint: str | None = None) -> None:
        where = f"{message_name}.{field}" if field else message_name
        super().__init__(f"VPP message {where}: {reason}", hint=hint)
        self.message_name = message_name
        self.field = field
        self.reason = reason


class VppApiError(DataplaneError):
    """VPP answered a request with a non-zero ``retval``.

    ``message_name``, ``arguments`` (the request's fields), ``retval`` and
    ``error_name`` (VPP's name for the retval, or None). ``index`` is the
    position of the failing request within a ``call_many`` batch (else None);
    ``replies`` then holds every reply of the batch, failing or not, because
    the other requests did take effect.
    """

    def __init__(self, message_name: str, arguments: dict, retval: int, *,
                 index: int | None = None, replies: list | None = None,
                 failures: int = 1) -> None:
        name = error_name(retval)
        what = f"{retval} ({name})" if name else str(retval)
        at = f" (request #{index} of a batch; {failures} failed)" if index is not None else ""
        super().__init__(f"VPP {message_name} failed: retval {what}{at}; "
                         f"args: {_short(arguments)}", op=message_name, args=arguments)
        self.message_name = message_name
        self.arguments = dict(arguments)
        self.retval = retval
        self.error_name = name
        self.index = index
        self.replies = replies


class VppUnavailable(Unavailable):
    """VPP cannot be reached: no socket, VPP down or restarting, not a VPP."""

    def __init__(self, message: str, *, socket_path: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.socket_path = socket_path


class VppVersionMismatch(FatalError):
    """The connected VPP lacks needed messages or has them with other CRCs.

    ``missing``: names VPP does not know. ``different``: name -> (CRC in our
    definitions, CRC in VPP). The agent must not talk to such a VPP: the
    bytes it sends would be read with another layout.
    """

    def __init__(self, missing: list[str], different: dict[str, tuple[str, str]],
                 *, hint: str | None = None) -> None:
        parts = []
        if missing:
            parts.append("missing: " + ", ".join(sorted(missing)))
        if different:
            parts.append("different CRC: " + ", ".join(
                f"{n} (ours {a}, VPP {b})" for n, (a, b) in sorted(different.items())))
        super().__init__("VPP API version mismatch: " + "; ".join(parts), hint=hint or (
            "use the API definitions (*.api.json) installed with this VPP, or a VPP "
            "release the agent supports"))
        self.missing = sorted(missing)
        self.different = dict(different)


def check_reply(name: str, kwargs: Mapping[str, Any], reply: Any) -> Any:
    """Raise VppApiError if ``reply.retval`` is not 0; return the reply."""
    retval = getattr(reply, "retval", 0)
    if retval:
        raise VppApiError(name, dict(kwargs), retval)
    return reply


def raise_batch_failures(name: str, items: list, replies: list) -> list:
    """Raise VppApiError for the first failing reply of a batch, else return replies."""
    failed = [i for i, r in enumerate(replies) if getattr(r, "retval", 0)]
    if failed:
        i = failed[0]
        raise VppApiError(name, dict(items[i]), replies[i].retval, index=i,
                          replies=replies, failures=len(failed))
    return replies
