"""CNI requests as the ``contiv-cni`` executable forwards them: validation,
version negotiation, dispatch to :class:`agent.podnet.PodNetwork` and results
shaped for the requested spec version (0.3.0 ... 1.1.0).

The executable forwards the CNI environment and stdin unparsed; everything a
CNI plugin must check is checked here, and every failure becomes a CNI error
object with the spec's code -- never a traceback.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Callable

from agent.errors import ContivError, Exhausted, InvalidInput, PodOptionError, TemporaryError, Unavailable
from agent.ipam.pods import check_valid_attachments
from agent.model import names
from agent.podnet import PodNetwork, PodResult

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")

# Well-known error codes (CNI spec 1.1.0, "Error")
E_INCOMPATIBLE_VERSION = 1
E_UNSUPPORTED_FIELD = 2
E_UNKNOWN_CONTAINER = 3
E_INVALID_ENV = 4
E_IO = 5
E_DECODE = 6
E_INVALID_CONFIG = 7
E_TRY_AGAIN = 11
E_NOT_AVAILABLE = 50
E_NOT_AVAILABLE_LIMITED = 51
# Plugin-specific codes (100+)
E_POOL_EXHAUSTED = 100
E_DATAPLANE = 101
E_POD_OPTIONS = 102  # the pod's annotations: malformed, or not for this node (agent.podopts)
E_INTERNAL = 999


class CNIError(Exception):
    """``version``: the configuration's cniVersion once known (errors echo it)."""

    def __init__(self, code: int, msg: str, details: str = "", version: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details, self.version = code, msg, details, version


@dataclass(slots=True)
class CNIResponse:
    exit_code: int
    body: bytes


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def _error(version: str, e: CNIError) -> CNIResponse:
    out = {"cniVersion": version, "code": e.code, "msg": e.msg}
    if e.details:
        out["details"] = e.details
    return CNIResponse(1, json.dumps(out).encode())


def parse_cni_args(raw: str) -> dict[str, str]:
    """``K1=V1;K2=V2`` (CNI_ARGS) -> dict; raises CNIError(4) if malformed."""
    out = {}
    for part in filter(None, raw.split(";")):
        k, sep, v = part.partition("=")
        if not sep or not k:
            raise CNIError(E_INVALID_ENV, f"CNI_ARGS: {part!r} is not KEY=VALUE")
        out[k] = v
    return out


class CNIHandler:
    """Turns (command, env, stdin) into (exit code, stdout)."""

    def __init__(self, podnet: PodNetwork, status: Callable[[], tuple[int, str]]) -> None:
        self.podnet = podnet
        #: () -> (0, "") when ready, else (50 or 51, why)
        self.status = status

    def handle(self, env: dict[str, str], stdin: bytes) -> CNIResponse:
        version = "1.1.0"
        try:
            command = env.get("CNI_COMMAND", "")
            if command not in COMMANDS:
                raise CNIError(E_INVALID_ENV, f"CNI_COMMAND {command!r} is not one of "
                                              f"{', '.join(COMMANDS)}" if command else
                               "CNI_COMMAND is not set")
            if command == "VERSION":
                return CNIResponse(0, json.dumps({"cniVersion": "1.1.0",
                                                  "supportedVersions": list(SUPPORTED_VERSIONS)}).encode())
            conf = self._parse_conf(stdin)
            version = conf["cniVersion"]
            return self._dispatch(command, env, conf)
        except CNIError as e:
            v = e.version or version
            return _error(v if v in SUPPORTED_VERSIONS else "1.1.0", e)
        except Exhausted as e:
            return _error(version, CNIError(E_POOL_EXHAUSTED, e.message, e.hint or ""))
        except PodOptionError as e:
            return _error(version, CNIError(E_POD_OPTIONS, e.message, e.hint or ""))
        except Unavailable as e:
            return _error(version, CNIError(E_TRY_AGAIN, e.message, e.hint or ""))
        except TemporaryError as e:
            return _error(version, CNIError(E_DATAPLANE, e.message, e.hint or ""))
        except ContivError as e:
            return _error(version, CNIError(E_INTERNAL, e.message, e.hint or ""))
        except Exception as e:  # noqa: BLE001 -- the runtime gets a CNI error, the log the traceback
            log.exception("CNI %s failed", env.get("CNI_COMMAND"))
            return _error(version, CNIError(E_INTERNAL, f"internal error: {type(e).__name__}: {e}"))

    # ------------------------------------------------------------------ parsing
    @staticmethod
    def _parse_conf(stdin: bytes) -> dict:
        try:
            conf = json.loads(stdin)
        except (ValueError, UnicodeDecodeError) as e:
            raise CNIError(E_DECODE, f"failed to decode network configuration: {e}") from None
        if not isinstance(conf, dict):
            raise CNIError(E_DECODE, "network configuration must be a JSON object")
        version = conf.get("cniVersion")
        if not isinstance(version, str) or not version:
            raise CNIError(E_INVALID_CONFIG, "network configuration has no cniVersion")
        if version not in SUPPORTED_VERSIONS:
            raise CNIError(E_INCOMPATIBLE_VERSION,
                           f"incompatible CNI version {version}",
                           f"supported: {', '.join(SUPPORTED_VERSIONS)}")
        # from here on the version is known: errors carry it (the spec: "the same
        # value as provided by the configuration")
        for fld in ("name", "type"):
            if not isinstance(conf.get(fld), str) or not conf[fld]:
                raise CNIError(E_INVALID_CONFIG, f"network configuration has no {fld}", version=version)
        mtu = conf.get("mtu")
        if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool) or not 576 <= mtu <= 9000):
            raise CNIError(E_INVALID_CONFIG, f"mtu {mtu!r} must be an integer in 576..9000",
                           version=version)
        return conf

    @staticmethod
    def _need(env: dict, *keys: str) -> None:
        for k in keys:
            if not env.get(k):
                raise CNIError(E_INVALID_ENV, f"{k} is not set")

    def _dispatch(self, command: str, env: dict, conf: dict) -> CNIResponse:
        version = conf["cniVersion"]
        vt = _version_tuple(version)
        if command == "CHECK" and vt < (0, 4, 0):
            raise CNIError(E_INCOMPATIBLE_VERSION, "config version does not allow CHECK")
        if command in ("STATUS", "GC") and vt < (1, 1, 0):
            raise CNIError(E_INCOMPATIBLE_VERSION, f"config version does not allow {command}")
        if command == "STATUS":
            code, why = self.status()
            if code:
                raise CNIError(code, why)
            return CNIResponse(0, b"")
        if command == "GC":
            # A missing list must not read as "nothing is valid": that would
            # tear down every pod on the node. libcni sends the list under both
            # names (cni.dev/attachments is what an early 1.1.0 text said,
            # containernetworking/cni#1101); some runtimes send only that one.
            for name in ("cni.dev/valid-attachments", "cni.dev/attachments"):
                if name in conf:
                    valid = conf[name]
                    break
            else:
                raise CNIError(E_INVALID_CONFIG, "GC needs cni.dev/valid-attachments")
            try:
                attachments = check_valid_attachments(valid)
            except InvalidInput as e:
                raise CNIError(E_INVALID_CONFIG, e.message) from None
            self.podnet.gc(attachments)
            return CNIResponse(0, b"")
        need = {"ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
                "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
                "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH")}[command]
        self._need(env, *need)
        cid, ifname = env["CNI_CONTAINERID"], env["CNI_IFNAME"]
        try:
            names.check_container_id(cid, "CNI_CONTAINERID")
            names.check_ifname(ifname, "CNI_IFNAME")
        except InvalidInput as e:
            raise CNIError(E_INVALID_ENV, e.message) from None
        args = parse_cni_args(env.get("CNI_ARGS", ""))
        if command == "DEL":
            self.podnet.delete(cid, ifname)
            return CNIResponse(0, b"")
        netns = env["CNI_NETNS"]
        if not netns.startswith("/") or not os.path.exists(netns):
            raise CNIError(E_INVALID_ENV, f"CNI_NETNS {netns!r} is not an existing namespace path")
        if command == "CHECK":
            prev = conf.get("prevResult") or {}
            expect = [ip.get("address") for ip in prev.get("ips", []) if isinstance(ip, dict)]
            problems = self.podnet.check(cid, ifname, netns, [e for e in expect if e])
            if problems:
                raise CNIError(E_INTERNAL, f"CHECK {cid}/{ifname}: " + "; ".join(problems))
            return CNIResponse(0, b"")
        result = self.podnet.add(cid, ifname, netns, pod_namespace=args.get("K8S_POD_NAMESPACE", ""),
                                 pod_name=args.get("K8S_POD_NAME", ""), mtu=conf.get("mtu") or 0,
                                 pod_uid=args.get("K8S_POD_UID", ""))
        return CNIResponse(0, json.dumps(shape_result(version, result, conf.get("dns"))).encode())


def shape_result(version: str, r: PodResult, dns=None) -> dict:
    """The ADD result in the layout of ``version`` (0.3.x/0.4.0 carry ips[].version);
    the interfaces are the data plane's (:meth:`agent.dataplane.Dataplane.pod_interfaces`)."""
    legacy = _version_tuple(version) < (1, 0, 0)
    interfaces = []
    v11 = _version_tuple(version) >= (1, 1, 0)
    for i in r.interfaces:
        entry = {"name": i.name}
        if i.mac or not i.socket:
            entry["mac"] = i.mac
        if i.sandbox:
            entry["sandbox"] = i.sandbox
        if i.socket:
            if v11:  # socketPath is CNI 1.1's
                entry["socketPath"] = i.socket
        elif v11:
            entry["mtu"] = r.mtu
        interfaces.append(entry)
    # the addresses are the pod's, its interface the last netdev; a memif
    # (a socket, after it) has the memif address
    pod_index = max(n for n, i in enumerate(r.interfaces) if not i.socket)
    ips, routes = [], []
    for cidr in r.allocation.ips:
        v6 = ":" in cidr
        gw = next((g for g in r.gateways if (":" in g) == v6), None)
        entry = {"address": cidr, "interface": pod_index}
        if gw:
            entry["gateway"] = gw
            routes.append({"dst": "::/0" if v6 else "0.0.0.0/0", "gw": gw})
        if legacy:
            entry = {"version": "6" if v6 else "4", **entry}
        ips.append(entry)
    at = next((n for n, i in enumerate(r.interfaces) if i.socket), None)
    if r.allocation.memif and at is not None:
        memif = {"address": r.allocation.memif, "interface": at}
        ips.append({"version": "4", **memif} if legacy else memif)
    out = {"cniVersion": version, "interfaces": interfaces, "ips": ips, "routes": routes,
           "dns": dns if isinstance(dns, dict) else {}}
    return out
