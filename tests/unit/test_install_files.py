"""contivctl.install.files: the pure renderers of `install node` -- deterministic,
loadable back by the agent's own loader, checked input, systemd-verified units."""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import AgentConfig, load_config
from agent.errors import InvalidInput
from contivctl.install import files as f

KEYS = [x.name for x in dataclasses.fields(AgentConfig) if x.name != "extra"]
CONTIVCTL = str(Path(sys.executable).parent / "contivctl")
UPLINK = {"vpp_uplink": "eth1", "vpp_uplink_cidr": "192.168.56.110/24"}
RENDERERS = [f.agent_yaml, f.agent_unit, f.sysctl_conf, f.modules_conf, f.vpp_startup, f.vpp_dropin]
#: every key, none at its default, several of them unsafe as plain YAML
EVERY_KEY = {
    "node": "node-7", "etcd": "on", "etcd_data_dir": "/var/lib/my etcd", "dataplane": "vpp",
    "socket": "/run/contiv/a#b.sock", "pod_cidr": "10.244.0.0/16", "node_prefix": 26,
    "node_ip": "fd00::7", "underlay_if": "yes", "mtu": 9000, "vxlan_vni": 16777215,
    "vxlan_port": 8472, "resync_interval": 0, "gc_interval": 1.5e-05, "history_size": 1,
    "log_level": "DEBUG", "service_cidr": "fd00:96::/108", "vpp_api_socket": "/run/vpp2/api.sock",
    "vpp_stats_socket": "/run/vpp2/stats.sock", "vpp_uplink": "no", "vpp_uplink_cidr": "10.0.0.2/24",
    "vpp_uplink_gateway": "10.0.0.1", "metrics_address": "[::1]:9402", "vpp_stn": True,
    "stn_dir": "/var/lib/my stn",
}


def opts(dataplane="linux", config=None, **kw) -> f.NodeOptions:
    return f.NodeOptions(dataplane, kw.pop("node", "node1"), kw.pop("contivctl", CONTIVCTL),
                         dict(config or {}), **kw)


def vpp_opts(config=None, **kw) -> f.NodeOptions:
    return opts("vpp", {**UPLINK, **(config or {})}, **kw)


def load_back(tmp_path, o) -> AgentConfig:
    p = tmp_path / "agent.yaml"
    p.write_text(f.agent_yaml(o))
    return load_config(str(p))


def test_every_key_of_the_test_table_is_an_agent_setting():
    assert sorted(EVERY_KEY) == sorted(KEYS)  # a new setting must be added to the round trip


def test_rendering_is_deterministic_whatever_the_order_the_settings_come_in():
    a = vpp_opts({"mtu": 1400, "etcd": "http://10.0.0.1:2379"})
    b = f.NodeOptions("vpp", "node1", CONTIVCTL, {"etcd": "http://10.0.0.1:2379", "mtu": 1400, **UPLINK})
    for render in RENDERERS:
        assert render(a) == render(b) == render(a), render.__name__


@pytest.mark.parametrize("o, expect", [
    (opts(), AgentConfig(node="node1")),
    (vpp_opts({"vpp_uplink_gateway": "192.168.56.1", "mtu": 1450}),
     AgentConfig(node="node1", dataplane="vpp", vpp_uplink="eth1", vpp_uplink_cidr="192.168.56.110/24",
                 vpp_uplink_gateway="192.168.56.1", mtu=1450)),
    (opts("vpp", EVERY_KEY, node="node-7"),
     AgentConfig(**{**EVERY_KEY, "resync_interval": 0.0})),
    (opts(config={"etcd": "", "node_ip": "10.0.0.1", "resync_interval": 10}),
     AgentConfig(node="node1", node_ip="10.0.0.1", resync_interval=10.0)),
], ids=["defaults", "vpp-uplink", "every-key", "empty-string-and-int-as-float"])
def test_agent_yaml_loads_back_to_the_configuration_the_options_mean(tmp_path, o, expect):
    got = load_back(tmp_path, o)
    assert got == expect
    assert got.to_dict() == expect.to_dict()  # field by field, for a readable failure


@pytest.mark.parametrize("o", [opts(), vpp_opts(), opts("vpp", EVERY_KEY, node="node-7")],
                         ids=["linux", "vpp", "every-key"])
def test_agent_yaml_has_every_key_once_set_when_given_else_commented_with_its_default(o):
    text = f.agent_yaml(o)
    given = set(o.config) | {"node", "dataplane"}
    for key in KEYS:
        lines = [ln for ln in text.splitlines() if re.match(rf"(# )?{key}: ", ln)]
        assert len(lines) == 1, (key, lines)
        assert lines[0].startswith("#") == (key not in given), lines[0]
        # a comment says what it is, just above
        above = text.splitlines()[text.splitlines().index(lines[0]) - 1]
        assert above.startswith("# ") and not re.match(rf"# ({'|'.join(KEYS)}): ", above), above
    assert "(see docs/cli.md)" not in text  # every setting has its own description
    assert '# log_level: "info"' in f.agent_yaml(opts())


BAD = [  # (options, what the message must name, renderers that must refuse)
    (dict(dataplane="dpdk"), r"dataplane 'dpdk' is not one of linux, vpp", RENDERERS),
    (dict(contivctl="contivctl"), r"contivctl 'contivctl' must be an absolute path", RENDERERS),
    (dict(contivctl="/opt/my tools/contivctl"), r"contivctl '/opt/my tools/contivctl'", RENDERERS),
    (dict(config_path="/etc/contiv/agent%i.yaml"), r"config_path '/etc/contiv/agent%i.yaml'", RENDERERS),
    (dict(vpp_binary="/usr/bin/vpp$X"), r"vpp_binary", RENDERERS),
    (dict(vpp_startup_path="/etc/contiv/start\nup.conf"), r"vpp_startup_path", RENDERERS),
    (dict(config={"bogus": 1, "extra": {}}), r"unknown agent setting\(s\) bogus, extra", RENDERERS),
    (dict(config={"mtu": "1500"}), r"agent setting mtu: '1500' is not a int", RENDERERS),
    (dict(config={"resync_interval": True}), r"agent setting resync_interval: True", RENDERERS),
    (dict(config={"node_prefix": 24.0}), r"agent setting node_prefix", RENDERERS),
    (dict(config={"gc_interval": float("inf")}), r"gc_interval: inf is not a finite", RENDERERS),
    (dict(config={"etcd": "http://x\n"}), r"agent setting etcd: .* control", RENDERERS),
    (dict(config={"dataplane": "vpp"}), r"agent setting dataplane 'vpp' contradicts", RENDERERS),
    (dict(config={"node": "other"}), r"agent setting node 'other' contradicts", RENDERERS),
    (dict(config={"pod_cidr": "10.1.0.0/33"}), r"pod_cidr", RENDERERS),
    (dict(node="Node_1"), r"node name 'Node_1'", RENDERERS),
    (dict(dataplane="vpp"), r"vpp_uplink and vpp_uplink_cidr", RENDERERS),
    (dict(dataplane="vpp", config={**UPLINK, "vpp_stats_socket": "/run/vpp/st ats.sock"}),
     r"vpp_stats_socket", [f.vpp_startup]),
    (dict(dataplane="vpp", config={**UPLINK, "vpp_api_socket": "/" + "d" * 100 + "/api.sock"}),
     r"too long for a unix socket", [f.vpp_startup, f.vpp_dropin]),
]


@pytest.mark.parametrize("kw, pattern, renderers", BAD, ids=[b[1][:40] for b in BAD])
def test_bad_options_raise_invalid_input_naming_what_is_wrong(kw, pattern, renderers):
    o = opts(**kw)
    for render in renderers:
        with pytest.raises(InvalidInput, match=pattern):
            render(o)


def test_a_node_setting_equal_to_the_option_is_accepted():
    assert 'node: "node1"' in f.agent_yaml(opts(config={"node": "node1", "dataplane": "linux"}))


def test_agent_unit_runs_the_agent_with_its_configuration_and_orders_vpp_only_on_vpp_nodes():
    linux, vpp = f.agent_unit(opts()), f.agent_unit(vpp_opts(config_path="/etc/c/a.yaml"))
    assert f"\nExecStart={CONTIVCTL} agent run --config /etc/contiv/agent.yaml\n" in linux
    assert f"\nExecStart={CONTIVCTL} agent run --config /etc/c/a.yaml\n" in vpp
    for text in (linux, vpp):
        lines = set(text.splitlines())
        assert {"After=network-online.target", "Wants=network-online.target", "Restart=on-failure",
                "RuntimeDirectory=contiv", "RuntimeDirectoryPreserve=yes", "StateDirectory=contiv",
                "KillMode=mixed", "WantedBy=multi-user.target"} <= lines
        assert any(re.fullmatch(r"RestartSec=[1-5]", ln) for ln in lines)
    assert "vpp.service" not in linux
    assert {"After=vpp.service", "Wants=vpp.service"} <= set(vpp.splitlines())
    assert not any(ln.startswith(("Requires=", "BindsTo=")) for ln in vpp.splitlines())
    # the agent reads the API definitions of the VPP that vpp.service runs
    assert "VPP_PREFIX" not in linux and "Environment=VPP_PREFIX=/usr\n" in vpp
    assert "Environment=VPP_PREFIX=/opt/vpp\n" in f.agent_unit(vpp_opts(vpp_binary="/opt/vpp/bin/vpp"))
    assert "VPP_PREFIX" not in f.agent_unit(vpp_opts(vpp_binary="/opt/vpp-26/vpp"))


def _verify(unit: Path) -> subprocess.CompletedProcess:
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("o", [opts(), vpp_opts()], ids=["linux", "vpp"])
def test_agent_unit_passes_systemd_analyze_verify(tmp_path, o):
    assert Path(CONTIVCTL).is_file(), "the unit must run a real executable"
    unit = tmp_path / f.UNIT_NAME
    unit.write_text(f.agent_unit(o))
    p = _verify(unit)
    assert p.returncode == 0 and not p.stderr.strip() and not p.stdout.strip(), p.stdout + p.stderr
    # the check can fail: the same unit with an executable that does not exist
    broken = tmp_path / "broken" / f.UNIT_NAME
    broken.parent.mkdir()
    broken.write_text(f.agent_unit(dataclasses.replace(o, contivctl="/nonexistent/contivctl")))
    assert _verify(broken).returncode != 0


def test_vpp_dropin_resets_exec_start_and_passes_systemd_analyze_verify(tmp_path):
    vpp = shutil.which("vpp") or "/opt/vpp/bin/vpp"
    if not Path(vpp).is_file():
        vpp = CONTIVCTL  # verify needs an executable; which one does not matter here
    o = vpp_opts(vpp_binary=vpp, vpp_startup_path="/etc/contiv/vpp/startup.conf")
    text = f.vpp_dropin(o)
    execs = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    assert execs == ["ExecStart=", f"ExecStart={vpp} -c /etc/contiv/vpp/startup.conf"]
    assert "LogsDirectory=vpp" in text.splitlines()
    # the distribution's unit, as FD.io's package ships it (stand-in: none is installed here)
    (tmp_path / "vpp.service").write_text(
        "[Unit]\nDescription=vector packet processing engine\n[Service]\nType=simple\n"
        f"ExecStart={vpp} -c /etc/vpp/startup.conf\nRestart=always\n[Install]\nWantedBy=multi-user.target\n")
    (tmp_path / "vpp.service.d").mkdir()
    (tmp_path / "vpp.service.d" / "contiv.conf").write_text(text)
    p = _verify(tmp_path / "vpp.service")
    assert p.returncode == 0 and not p.stderr.strip() and not p.stdout.strip(), p.stdout + p.stderr
    # without the empty ExecStart= systemd refuses two commands in a simple service
    (tmp_path / "vpp.service.d" / "contiv.conf").write_text(text.replace("ExecStart=\n", "", 1))
    p = _verify(tmp_path / "vpp.service")
    assert p.returncode != 0, p.stdout + p.stderr


def test_vpp_dropin_needs_no_log_directory_when_vpp_runs_elsewhere():
    text = f.vpp_dropin(vpp_opts({"vpp_api_socket": "/run/vpp-b/api.sock"}))
    assert "LogsDirectory" not in text


def test_vpp_startup_takes_the_agents_sockets_and_derives_the_rest_from_the_api_socket():
    default = f.vpp_startup(vpp_opts())
    for line in ("runtime-dir /run/vpp", "cli-listen /run/vpp/cli.sock", "log /var/log/vpp/vpp.log",
                 "full-coredump", "nodaemon", "socksvr { socket-name /run/vpp/api.sock }",
                 "statseg { socket-name /run/vpp/stats.sock page-size 4k }",
                 "plugin dpdk_plugin.so { disable }"):
        assert re.search(rf"^\s*{re.escape(line)}$", default, re.M), line
    assert re.search(r"^# dpdk \{$", default, re.M)  # how to give VPP a NIC: commented out
    other = f.vpp_startup(vpp_opts({"vpp_api_socket": "/tmp/v/api.sock", "vpp_stats_socket": "/tmp/s.sock"}))
    assert "cli-listen /tmp/v/cli.sock" in other and "log /tmp/v/vpp.log" in other
    assert "statseg { socket-name /tmp/s.sock page-size 4k }" in other and "/run/vpp" not in other
    active = "\n".join(ln.split("#")[0] for ln in default.splitlines())
    assert active.count("{") == active.count("}")


def _words(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_modules_are_what_each_data_plane_uses_one_name_a_line():
    linux, vpp = _words(f.modules_conf(opts())), _words(f.modules_conf(vpp_opts()))
    for mods in (linux, vpp):
        assert all(re.fullmatch(r"[a-z0-9_]+", m) for m in mods), mods
        assert len(set(mods)) == len(mods)
    assert {"veth", "vxlan", "nf_tables", "nf_conntrack", "nf_nat", "nft_ct", "nft_nat", "nft_chain_nat",
            "nft_numgen", "nft_fib_ipv4", "nft_reject_ipv4", "nf_conntrack_netlink"} <= set(linux)
    assert {"veth", "af_packet"} <= set(vpp)
    assert not {m for m in vpp if m.startswith(("nf", "vxlan"))}  # VPP does VXLAN, NAT and ACLs itself


def test_sysctl_turns_on_ip_forwarding_on_linux_nodes_only():
    assert _words(f.sysctl_conf(opts())) == ["net.ipv4.ip_forward = 1"]
    assert _words(f.sysctl_conf(vpp_opts())) == []
    assert not re.search(r"conntrack", "\n".join(_words(f.sysctl_conf(opts()))))


def test_the_stn_watchdog_unit_watches_with_the_agents_paths_and_depends_on_nothing(tmp_path):
    o = vpp_opts({"vpp_stn": True, "stn_dir": "/var/lib/my-stn", "vpp_api_socket": "/run/vpp2/api.sock",
                  "socket": "/run/c/agent.sock"})
    text = f.stn_watch_unit(o)
    assert (f"\nExecStart={CONTIVCTL} --socket /run/c/agent.sock stn watch --dir /var/lib/my-stn "
            "--vpp-api-socket /run/vpp2/api.sock\n") in text
    lines = text.splitlines()
    assert {"Restart=always", "WantedBy=multi-user.target"} <= set(lines)
    # it must outlive VPP and the agent, whose deaths it watches for
    assert not any(ln.startswith(("Requires=", "BindsTo=", "PartOf=", "After=")) for ln in lines)
    unit = tmp_path / f.STN_UNIT_NAME
    unit.write_text(text)
    p = _verify(unit)
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr
    with pytest.raises(InvalidInput, match="stn_dir"):
        f.stn_watch_unit(vpp_opts({"vpp_stn": True, "stn_dir": "/var/lib/my stn"}))
