"""CNI error handling of ``contiv-cni`` against a real lab.

Bad input must give the spec's error code as a CNI error object on stdout and
a non-zero exit, whether the agent answers or cannot be reached, and must
leave nothing behind: no address allocated, no link on the node, nothing in
the pod's namespace. An ADD that fails half-way releases what it allocated
(DESIGN.md rule 11) and says why it failed.

The plugin is run directly with a hand-built environment (not through
:class:`lab.cniexec.Runtime`, which always sets CNI_COMMAND and CNI_PATH) so
that every variable can be left out.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import time

import pytest

from agent.cnihandler import SUPPORTED_VERSIONS
from agent.linux.values import host_ifname
from agent.model.records import Allocation
from lab import sysnet
from tests.helpers import sh, version_tuple as _vt

pytestmark = pytest.mark.root

IFNAME = "eth0"


def cid() -> str:
    return "err-" + secrets.token_hex(8)


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def lab(lab2):
    return lab2


@pytest.fixture(scope="module")
def sandbox(lab):
    """One pod namespace for the cases that must not touch it: (name, path)."""
    name = lab.paths.pod_ns("cnierr", "p" + secrets.token_hex(4))
    sysnet.netns_add(name)
    try:
        yield name, sysnet.netns_path(name)
    finally:
        sysnet.netns_del(name)


@pytest.fixture
def own_lab():
    """A one-node lab of the test's own: the tests that judge whether the
    agent stays idle after a failed ADD must not inherit (nor leave behind) a
    busy agent in the module's lab."""
    from lab.cluster import Lab
    from tests.conftest import unique_lab_name
    lab = Lab(unique_lab_name())
    try:
        lab.up(nodes=1)
        yield lab
    finally:
        lab.down()


@pytest.fixture
def fresh_sandbox(lab):
    """A pod namespace of its own for one test, removed afterwards."""
    made: list[str] = []

    def make() -> tuple[str, str]:
        name = lab.paths.pod_ns("cnierr", "p" + secrets.token_hex(4))
        made.append(name)
        sysnet.netns_add(name)
        return name, sysnet.netns_path(name)

    try:
        yield make
    finally:
        for name in made:
            sysnet.netns_del(name)


class Plugin:
    """Runs the installed contiv-cni with exactly the environment given."""

    def __init__(self, lab) -> None:
        self.lab = lab
        self.path = str(lab.paths.cni_bin / "contiv-cni")
        self.cni_path = ":".join(lab.cni_path())

    def conf(self, version: str | None = "1.1.0", node: str = "node1", **extra) -> dict:
        cl = self.lab.conflist(node)
        c = dict(cl["plugins"][0])
        c["name"] = cl["name"]
        if version is not None:
            c["cniVersion"] = version
        c.update(extra)
        return c

    def env(self, command: str, container_id: str, netns: str, ifname: str = IFNAME) -> dict:
        return {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
                "CNI_IFNAME": ifname, "CNI_PATH": self.cni_path}

    def run(self, env: dict, stdin: bytes | dict) -> tuple[int, bytes, str]:
        data = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
        p = subprocess.run([self.path], input=data, capture_output=True, timeout=60,
                           env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **env})
        return p.returncode, p.stdout, p.stderr.decode(errors="replace")


@pytest.fixture(scope="module")
def plugin(lab):
    return Plugin(lab)


def node_links(lab, node: str = "node1") -> set[str]:
    out = sh("ip", "-n", lab.paths.node_ns(node), "-br", "link")
    return {line.split()[0].split("@")[0] for line in out.splitlines() if line.strip()}


def node_routes(lab, node: str = "node1") -> set[str]:
    return set(sh("ip", "-n", lab.paths.node_ns(node), "route", "show").splitlines())


def allocations(lab, node: str = "node1") -> dict[tuple[str, str], Allocation]:
    return {(a.container_id, a.ifname): a for a in lab.client(node).ipam().allocations}


def pod_links(netns: str) -> set[str]:
    out = sh("ip", "-n", netns, "-br", "link")
    return {line.split()[0].split("@")[0] for line in out.splitlines() if line.strip()}


def snapshot(lab, sandbox_name: str | None = None) -> dict:
    s = {"links": node_links(lab), "routes": node_routes(lab), "allocations": allocations(lab)}
    if sandbox_name:
        s["pod"] = pod_links(sandbox_name)
    return s


def assert_cni_error(rc: int, out: bytes, code: int | tuple[int, ...], *words: str,
                     version: str | None = None) -> dict:
    """A non-zero exit with exactly one CNI error object on stdout, with
    ``code`` (or one of several), a message naming ``words`` and, when given,
    the config's ``version``."""
    assert rc != 0, f"expected failure, got exit 0 and {out!r}"
    try:
        err = json.loads(out)
    except ValueError:
        pytest.fail(f"stdout is not a CNI error object: {out!r}")
    assert isinstance(err, dict), err
    assert err.get("code") in (code if isinstance(code, tuple) else (code,)), err
    assert isinstance(err.get("msg"), str) and err["msg"], err
    for w in words:
        assert w.lower() in err["msg"].lower(), f"{w!r} not named in {err['msg']!r}"
    if version is not None:
        assert err.get("cniVersion") == version, err
    return err


versions = pytest.mark.parametrize("version", SUPPORTED_VERSIONS)


# ---------------------------------------------------------------------- environment (4)
# (case id, command, variables to drop, variables to override, words the message must name)
ENV_CASES = [
    ("no-command", "ADD", ["CNI_COMMAND"], {}, ["CNI_COMMAND"]),
    ("unknown-command", "FROB", [], {}, ["CNI_COMMAND", "FROB"]),
    ("no-containerid", "ADD", ["CNI_CONTAINERID"], {}, ["CNI_CONTAINERID"]),
    ("no-netns", "ADD", ["CNI_NETNS"], {}, ["CNI_NETNS"]),
    ("no-ifname", "ADD", ["CNI_IFNAME"], {}, ["CNI_IFNAME"]),
    ("ifname-16-bytes", "ADD", [], {"CNI_IFNAME": "e" * 16}, ["CNI_IFNAME"]),
    ("netns-missing-path", "ADD", [], {"CNI_NETNS": "/var/run/netns/cnierr-no-such-ns"},
     ["CNI_NETNS", "cnierr-no-such-ns"]),
    ("netns-relative", "ADD", [], {"CNI_NETNS": "var/run/netns/x"}, ["CNI_NETNS"]),
    # not UTF-8 (the byte 0xff): the plugin passes it on undecoded, the agent names it
    ("containerid-not-utf8", "ADD", [], {"CNI_CONTAINERID": "c0ffee\udcff"}, ["CNI_CONTAINERID"]),
    ("del-no-containerid", "DEL", ["CNI_CONTAINERID"], {}, ["CNI_CONTAINERID"]),
    ("del-no-ifname", "DEL", ["CNI_IFNAME"], {}, ["CNI_IFNAME"]),
    ("check-no-netns", "CHECK", ["CNI_NETNS"], {}, ["CNI_NETNS"]),
]


# CHECK does not exist before 0.4.0 (code 1: test_command_not_in_version_is_code_1)
ENV_MATRIX = [pytest.param(v, *c, id=f"{c[0]}-{v}") for c in ENV_CASES for v in SUPPORTED_VERSIONS
              if not (c[1] == "CHECK" and _vt(v) < (0, 4, 0))]


@pytest.mark.parametrize("version,case,command,drop,override,words", ENV_MATRIX)
def test_invalid_environment_is_code_4_and_leaks_nothing(lab, plugin, sandbox, version, case,
                                                         command, drop, override, words):
    name, path = sandbox
    before = snapshot(lab, name)
    env = plugin.env(command, cid(), path)
    for k in drop:
        del env[k]
    env.update(override)
    rc, out, _ = plugin.run(env, plugin.conf(version))
    # No command: nothing tells which version the runtime speaks yet.
    assert_cni_error(rc, out, 4, *words, version=None if case in ("no-command", "unknown-command")
                     else version)
    assert snapshot(lab, name) == before


# ---------------------------------------------------------------------- decode (6) / config (7)
# Each body names the lab's agentSocket where it can (the plugin finds it by a
# byte scan, without decoding), so that the agent itself rejects it.
DECODE_CASES = [
    ("truncated", b'{"agentSocket": "%(s)s", "cniVersion": "%(v)s", "name": "contiv", "type": ', []),
    ("trailing-garbage",
     b'{"agentSocket": "%(s)s", "cniVersion": "%(v)s", "name": "contiv", "type": "contiv-cni"} x', []),
    ("array", b'[{"agentSocket": "%(s)s", "cniVersion": "%(v)s", "name": "contiv", "type": "contiv-cni"}]',
     ["object"]),
    ("not-utf8", b'{"agentSocket": "%(s)s", "cniVersion": "%(v)s", "name": "\xff\xfe", "type": "contiv-cni"}',
     []),
]


@versions
@pytest.mark.parametrize("case,body,words", DECODE_CASES, ids=[c[0] for c in DECODE_CASES])
def test_undecodable_config_is_code_6(lab, plugin, sandbox, version, case, body, words):
    name, path = sandbox
    before = snapshot(lab, name)
    data = body % {b"s": plugin.conf()["agentSocket"].encode(), b"v": version.encode()}
    rc, out, _ = plugin.run(plugin.env("ADD", cid(), path), data)
    assert_cni_error(rc, out, 6, *words)
    assert snapshot(lab, name) == before


CONFIG_CASES = [
    ("no-name", {"name": None}, ["name"]),
    ("empty-name", {"name": ""}, ["name"]),
    ("no-type", {"type": None}, ["type"]),
    ("mtu-too-small", {"mtu": 100}, ["mtu"]),
    ("mtu-not-int", {"mtu": "1500"}, ["mtu"]),
]


@versions
@pytest.mark.parametrize("case,change,words", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_invalid_config_is_code_7(lab, plugin, sandbox, version, case, change, words):
    name, path = sandbox
    before = snapshot(lab, name)
    conf = plugin.conf(version)
    for k, v in change.items():
        if v is None:
            conf.pop(k, None)
        else:
            conf[k] = v
    rc, out, _ = plugin.run(plugin.env("ADD", cid(), path), conf)
    assert_cni_error(rc, out, 7, *words, version=version)
    assert snapshot(lab, name) == before


@pytest.mark.parametrize("value", [None, "", 1.0], ids=["absent", "empty", "number"])
def test_config_without_cni_version_is_code_7(lab, plugin, sandbox, value):
    name, path = sandbox
    before = snapshot(lab, name)
    conf = plugin.conf(None)
    if value is not None:
        conf["cniVersion"] = value
    rc, out, _ = plugin.run(plugin.env("ADD", cid(), path), conf)
    assert_cni_error(rc, out, 7, "cniVersion")
    assert snapshot(lab, name) == before


# ---------------------------------------------------------------------- versions (1)
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "STATUS", "GC"])
@pytest.mark.parametrize("bad", ["9.9.9", "0.2.0", "1.2.0"])
def test_unknown_cni_version_is_code_1(lab, plugin, sandbox, command, bad):
    name, path = sandbox
    before = snapshot(lab, name)
    rc, out, _ = plugin.run(plugin.env(command, cid(), path), plugin.conf(bad))
    err = assert_cni_error(rc, out, 1, bad)
    assert err["cniVersion"] in SUPPORTED_VERSIONS
    assert snapshot(lab, name) == before


COMMAND_NOT_IN_VERSION = [("CHECK", v) for v in SUPPORTED_VERSIONS if _vt(v) < (0, 4, 0)] + \
    [(c, v) for c in ("STATUS", "GC") for v in SUPPORTED_VERSIONS if _vt(v) < (1, 1, 0)]


@pytest.mark.parametrize("command,version", COMMAND_NOT_IN_VERSION)
def test_command_not_in_version_is_code_1(lab, plugin, sandbox, command, version):
    name, path = sandbox
    before = snapshot(lab, name)
    conf = plugin.conf(version)
    if command == "GC":
        conf["cni.dev/valid-attachments"] = []  # would release everything if obeyed
    rc, out, _ = plugin.run(plugin.env(command, cid(), path), conf)
    assert_cni_error(rc, out, 1, command, version=version)
    assert snapshot(lab, name) == before


# ---------------------------------------------------------------------- agent unreachable
@pytest.fixture
def down_conf(plugin, tmp_path):
    """A config whose agentSocket names a socket that does not exist."""
    sock = str(tmp_path / "no-agent.sock")

    def conf(version: str = "1.1.0", **extra) -> dict:
        return plugin.conf(version, agentSocket=sock, **extra)

    conf.socket = sock
    return conf


@versions
def test_agent_down_add_and_del_are_try_again_later(lab, plugin, sandbox, down_conf, version):
    name, path = sandbox
    before = snapshot(lab, name)
    for command in ("ADD", "DEL"):
        rc, out, _ = plugin.run(plugin.env(command, cid(), path), down_conf(version))
        assert_cni_error(rc, out, 11, "agent", version=version)
    if _vt(version) >= (0, 4, 0):
        rc, out, _ = plugin.run(plugin.env("CHECK", cid(), path), down_conf(version))
        assert_cni_error(rc, out, 11, "agent", version=version)
    assert snapshot(lab, name) == before


def test_agent_down_status_is_50(plugin, down_conf):
    rc, out, _ = plugin.run({"CNI_COMMAND": "STATUS", "CNI_PATH": plugin.cni_path}, down_conf())
    assert_cni_error(rc, out, 50, "agent", version="1.1.0")


@versions
def test_agent_down_still_reports_bad_input(plugin, sandbox, down_conf, version):
    _, path = sandbox
    env = plugin.env("ADD", cid(), path)
    # malformed JSON that still names the (missing) socket
    body = b'{"agentSocket": "%s", "cniVersion": "%s", "name": ' % (down_conf.socket.encode(),
                                                                   version.encode())
    assert_cni_error(*plugin.run(env, body)[:2], 6)
    assert_cni_error(*plugin.run(env, down_conf("9.9.9"))[:2], 1, "9.9.9")
    c = down_conf(version)
    del c["name"]
    assert_cni_error(*plugin.run(env, c)[:2], 7, "name", version=version)
    no_ifname = dict(env)
    del no_ifname["CNI_IFNAME"]
    assert_cni_error(*plugin.run(no_ifname, down_conf(version))[:2], 4, "CNI_IFNAME", version=version)
    if _vt(version) < (0, 4, 0):
        assert_cni_error(*plugin.run(plugin.env("CHECK", cid(), path), down_conf(version))[:2],
                         1, "CHECK", version=version)
    if _vt(version) < (1, 1, 0):
        assert_cni_error(*plugin.run(plugin.env("STATUS", cid(), path), down_conf(version))[:2],
                         1, "STATUS", version=version)


# ---------------------------------------------------------------------- failures half-way
def _host_link_of(lab, container_id: str) -> bool:
    return host_ifname(container_id, IFNAME) in node_links(lab)


def _agent_cpu_seconds(lab, node: str = "node1") -> float:
    # The agent is started by `ip netns exec`, which execs it: same pid.
    pid = lab.state().node(node).pid
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _assert_agent_idle(lab, node: str = "node1") -> None:
    """After a failed ADD the agent must not keep working on it (an idle agent
    uses ~0.01 s of CPU per second; a spinning loop a whole second)."""
    time.sleep(0.3)
    c0 = _agent_cpu_seconds(lab, node)
    time.sleep(1.0)
    used = _agent_cpu_seconds(lab, node) - c0
    assert used < 0.5, f"the agent of {node} used {used:.2f} s of CPU in 1 s after a failed ADD"


@pytest.mark.parametrize("leftover", [False, True], ids=["clean-node", "stale-host-veth"])
def test_add_failing_midway_releases_its_address_and_says_why(own_lab, leftover):
    """The pod already has an ``eth0``: the agent's veth cannot be created.

    ``stale-host-veth``: the node also holds a host veth of ours under this
    attachment's deterministic name (an ADD interrupted by an agent crash);
    the agent may remove it, but the error must still name the real cause.
    """
    lab, plugin = own_lab, Plugin(own_lab)
    name = lab.paths.pod_ns("cnierr", "blocked")
    sysnet.netns_add(name)  # removed with the lab (its name has the lab's prefix)
    path = sysnet.netns_path(name)
    sh("ip", "-n", name, "link", "add", IFNAME, "type", "veth", "peer", "name", "x0")
    container = cid()
    host = host_ifname(container, IFNAME)
    if leftover:
        node_ns = lab.paths.node_ns("node1")
        sh("ip", "-n", node_ns, "link", "add", host, "type", "veth", "peer", "name", "cvstale0")
        sh("ip", "-n", node_ns, "link", "set", host, "alias", "contiv:pod:cnierr/stale")
    links0 = node_links(lab) - {host, "cvstale0"}
    routes0, allocs0 = node_routes(lab), allocations(lab)
    env = plugin.env("ADD", container, path)
    env["CNI_ARGS"] = "K8S_POD_NAMESPACE=cnierr;K8S_POD_NAME=blocked"

    rc, out, _ = plugin.run(env, plugin.conf("1.1.0"))
    err = assert_cni_error(rc, out, 101, IFNAME, "exists", version="1.1.0")
    # the root cause, not a value that merely waited for it
    assert "pending" not in err["msg"] and "waiting for" not in err["msg"], err
    assert allocations(lab) == allocs0
    assert not _host_link_of(lab, container)
    assert node_links(lab) - {"cvstale0"} == links0
    assert node_routes(lab) == routes0
    assert pod_links(name) == {"lo", IFNAME, "x0"}
    _assert_agent_idle(lab)

    # Remove the blocker: the same ADD now succeeds, with an address of the node.
    sh("ip", "-n", name, "link", "del", IFNAME)
    rc, out, _ = plugin.run(env, plugin.conf("1.1.0"))
    try:
        assert rc == 0, out
        res = json.loads(out)
        assert (container, IFNAME) in allocations(lab)
        assert res["ips"][0]["address"] == allocations(lab)[(container, IFNAME)].ips[0]
        assert _host_link_of(lab, container)
    finally:
        plugin.run(plugin.env("DEL", container, path), plugin.conf("1.1.0"))
    assert allocations(lab) == allocs0
    assert not _host_link_of(lab, container)


def test_add_into_a_file_that_is_not_a_netns_fails_cleanly(own_lab, tmp_path):
    """CNI_NETNS names an existing file that is no network namespace."""
    lab, plugin = own_lab, Plugin(own_lab)
    notns = tmp_path / "not-a-netns"
    notns.write_text("")
    container = cid()
    before = snapshot(lab)
    rc, out, _ = plugin.run(plugin.env("ADD", container, str(notns)), plugin.conf("1.1.0"))
    # code 4 (bad environment) or 101 (the data plane could not enter it) are both honest
    assert_cni_error(rc, out, (4, 101), str(notns), version="1.1.0")
    assert snapshot(lab) == before
    assert not _host_link_of(lab, container)
    _assert_agent_idle(lab)


def test_add_never_deletes_a_foreign_link_that_holds_the_host_name(lab, plugin, fresh_sandbox):
    """A link that is not ours (no ``contiv:`` alias) under the name the agent
    wants for the host veth: DESIGN.md rule 5 -- what is not ours is never
    deleted. The ADD must fail, say why, and leave that link alone."""
    name, path = fresh_sandbox()
    container = cid()
    host = host_ifname(container, IFNAME)
    node_ns = lab.paths.node_ns("node1")
    sh("ip", "-n", node_ns, "link", "add", host, "type", "bridge")
    try:
        index = json.loads(sh("ip", "-j", "-n", node_ns, "link", "show", "dev", host))[0]["ifindex"]
        allocs0 = allocations(lab)
        rc, out, _ = plugin.run(plugin.env("ADD", container, path), plugin.conf("1.1.0"))
        still = subprocess.run(["ip", "-j", "-n", node_ns, "link", "show", "dev", host],
                               capture_output=True, text=True)
        assert still.returncode == 0 and json.loads(still.stdout)[0]["ifindex"] == index, \
            f"the agent deleted the foreign link {host} (ADD exit {rc}: {out!r})"
        assert_cni_error(rc, out, 101, host)
        assert allocations(lab) == allocs0
        assert pod_links(name) == {"lo"}
    finally:
        plugin.run(plugin.env("DEL", container, path), plugin.conf("1.1.0"))
        subprocess.run(["ip", "-n", node_ns, "link", "del", host], capture_output=True)
