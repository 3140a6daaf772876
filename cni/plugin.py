"""contiv-cni: the CNI plugin executable (CNI spec 1.1.0; configs 0.3.0 to 1.1.0).

It runs once per pod start, so it is built for start-up time: standard library
only, nothing imported on the fast path but the builtin ``_socket``, and the
file is self-contained so ``contivctl install cni`` can install it with an
interpreter line that skips site initialisation (``python3 -IS``).

What it does: forward the CNI environment (as ``X-CNI-*`` headers) and stdin
(unparsed) to the node agent's local API, print the agent's answer and exit
with the status the agent names. The agent does every check a CNI plugin
owes; this file only answers VERSION itself and, when the agent cannot be
reached, still tells bad input (codes 1, 4, 6, 7) from "try again later" (11)
and "not available" (50, for STATUS).
"""
import posix  # builtin and already loaded; `os` would cost ~1.5 ms of imports
import sys

DEFAULT_SOCKET = "/run/contiv/agent.sock"
SUPPORTED = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
VERSION_REPLY = ('{"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", '
                 '"1.0.0", "1.1.0"]}')
ENV_HEADERS = (("CNI_COMMAND", "X-CNI-Command"), ("CNI_CONTAINERID", "X-CNI-ContainerID"),
               ("CNI_NETNS", "X-CNI-Netns"), ("CNI_IFNAME", "X-CNI-IfName"),
               ("CNI_ARGS", "X-CNI-Args"), ("CNI_PATH", "X-CNI-Path"))
TIMEOUT = 120.0


def _quote(s):
    """JSON string literal without importing json (only on error paths)."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _fail(code, msg, version="1.1.0"):
    sys.stdout.write('{"cniVersion": %s, "code": %d, "msg": %s}\n' % (_quote(version), code, _quote(msg)))
    sys.stdout.flush()
    return 1


def _socket_path(conf):
    """The agent socket named in the config (``agentSocket``), found without
    decoding JSON; anything unusual falls back to a real JSON parse."""
    i = conf.find(b'"agentSocket"')
    if i < 0:
        return DEFAULT_SOCKET
    j = i + 13
    n = len(conf)
    while j < n and conf[j] in b" \t\r\n":
        j += 1
    if j < n and conf[j] == 58:  # ':'
        j += 1
        while j < n and conf[j] in b" \t\r\n":
            j += 1
        if j < n and conf[j] == 34:  # '"'
            k = conf.find(b'"', j + 1)
            if k > j and b"\\" not in conf[j + 1:k]:
                return conf[j + 1:k].decode("utf-8", "replace")
    import json  # noqa: PLC0415 -- slow path
    try:
        path = json.loads(conf).get("agentSocket")
    except (ValueError, AttributeError):
        return DEFAULT_SOCKET
    return path if isinstance(path, str) and path else DEFAULT_SOCKET


def _offline_error(cmd, conf, env):
    """The agent is unreachable: report bad input as the agent would (same
    codes, same order of checks as agent/cnihandler.py), else 'try later'."""
    import json  # noqa: PLC0415 -- slow path
    if cmd not in ("ADD", "DEL", "CHECK", "STATUS", "GC"):
        return 4, ("CNI_COMMAND %r is not one of ADD, DEL, CHECK, STATUS, GC, VERSION" % cmd
                   if cmd else "CNI_COMMAND is not set"), "1.1.0"
    try:
        data = json.loads(conf)
    except ValueError as e:
        return 6, "failed to decode network configuration: %s" % e, "1.1.0"
    if not isinstance(data, dict):
        return 6, "network configuration must be a JSON object", "1.1.0"
    version = data.get("cniVersion")
    if not isinstance(version, str) or not version:
        return 7, "network configuration has no cniVersion", "1.1.0"
    if version not in SUPPORTED:
        return 1, "incompatible CNI version %s" % version, "1.1.0"
    for field in ("name", "type"):
        if not isinstance(data.get(field), str) or not data[field]:
            return 7, "network configuration has no %s" % field, version
    mtu = data.get("mtu")
    if mtu is not None and (type(mtu) is not int or not 576 <= mtu <= 9000):
        return 7, "mtu %r must be an integer in 576..9000" % (mtu,), version
    if cmd == "CHECK" and version < "0.4.0" or cmd in ("STATUS", "GC") and version < "1.1.0":
        return 1, "config version does not allow %s" % cmd, version  # (SUPPORTED sorts as text)
    if cmd == "STATUS":
        return 50, "the contiv agent is not reachable", version
    need = {"ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
            "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
            "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH")}.get(cmd, ())
    for var in need:
        if not env.get(var):
            return 4, "%s is not set" % var, version
    return 11, "the contiv agent is not reachable; try again later", version


def _exchange(path, request):
    import _socket  # noqa: PLC0415 -- builtin; `socket` would cost ~8 ms of imports
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(TIMEOUT)
        s.connect(path)
        s.sendall(request)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        s.close()


def _environ():
    """The CNI variables, decoded as ``os.environ`` would (file-system
    encoding, surrogateescape), without importing ``os``."""
    raw, enc = posix.environ, sys.getfilesystemencoding()
    return {var: raw[key].decode(enc, "surrogateescape")
            for var, _ in ENV_HEADERS for key in (var.encode(),) if key in raw}


def main():
    env = _environ()
    cmd = env.get("CNI_COMMAND", "")
    if cmd == "VERSION":
        sys.stdout.write(VERSION_REPLY + "\n")
        return 0
    try:
        conf = sys.stdin.buffer.read()
    except OSError as e:
        return _fail(5, "cannot read the network configuration from stdin: %s" % e)
    head = ["POST /v1/cni HTTP/1.1", "Host: agent", "Connection: close",
            "Content-Type: application/json", "Content-Length: %d" % len(conf)]
    for var, header in ENV_HEADERS:
        value = env.get(var)
        if value is None:
            continue
        if "\r" in value or "\n" in value:
            return _fail(4, "%s contains a line break" % var)
        head.append("%s: %s" % (header, value))
    request = ("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "surrogateescape") + conf
    path = _socket_path(conf)
    try:
        raw = _exchange(path, request)
    except OSError:
        code, msg, version = _offline_error(cmd, conf, env)
        return _fail(code, msg, version)
    header_end = raw.find(b"\r\n\r\n")
    if not raw.startswith(b"HTTP/1.") or header_end < 0:
        return _fail(11, "the contiv agent at %s sent a malformed reply" % path)
    status_line, _, headers = raw[:header_end].partition(b"\r\n")
    body = raw[header_end + 4:]
    exit_code = None
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-cni-exit":
            exit_code = int(value.strip()) if value.strip().isdigit() else 1
    if exit_code is None:
        return _fail(11, "the contiv agent at %s answered %s" % (
            path, status_line.decode("latin-1")))
    if body:
        sys.stdout.buffer.write(body)
        if not body.endswith(b"\n"):
            sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
