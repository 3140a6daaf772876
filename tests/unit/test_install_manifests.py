"""contivctl install manifests: every object valid for the API server (strict
schemas), references that resolve, commands that the real commands parse, a
ConfigMap the agent's own loader reads, read-only RBAC on exactly the
reflected kinds, checked input, deterministic output."""
from __future__ import annotations

import copy
import inspect
import json
import os
import re
import subprocess
import sys

import kubernetes_validate as kv
import pytest
import typer
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from agent.config import AgentConfig, load_config
from agent.errors import InvalidInput
from contivctl.commands import install_manifests as cli
from contivctl.install import files
from contivctl.install import manifests as m

EXTERNAL = "http://192.0.2.10:2379"
UNIX = "unix:///run/etcd/etcd.sock"
VERSIONS = sorted({"1.30.0", kv.latest_version()})
VARIANTS = [(dp, etcd) for dp in ("linux", "vpp") for etcd in ("", EXTERNAL, UNIX)]
UPLINK = "vpp_uplink: eth1\nvpp_uplink_cidr: 192.168.56.110/24\n"


def one(objs, kind, name=None) -> dict:
    found = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, (kind, name, [o["kind"] for o in objs])
    return found[0]


def pod(obj) -> dict:
    return obj["spec"]["template"]["spec"]


def container(obj, name) -> dict:
    return next(c for c in pod(obj)["containers"] + pod(obj).get("initContainers", []) if c["name"] == name)


def volume_of(obj, c, mount_path) -> dict:
    """The pod volume mounted at ``mount_path`` in container ``c``."""
    name = next(v["name"] for v in c["volumeMounts"] if v["mountPath"] == mount_path)
    return next(v for v in pod(obj)["volumes"] if v["name"] == name)


def click_command(app: typer.Typer, name: str):
    cmd = get_command(app)  # a group with one command is that command
    return cmd.commands[name] if hasattr(cmd, "commands") else cmd


# --- the API server would take them --------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dataplane,etcd", VARIANTS)
def test_every_object_validates_strictly(dataplane, etcd, version):
    for o in m.manifests(dataplane, etcd=etcd, namespace="contiv"):
        kv.validate(o, version, strict=True)


def test_strict_validation_catches_a_misspelt_field_and_a_wrong_type():
    ds = one(m.manifests(), "DaemonSet")
    bad = copy.deepcopy(ds)
    pod(bad)["hostNetwrok"] = True
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, VERSIONS[0], strict=True)
    bad = copy.deepcopy(ds)
    pod(bad)["hostPID"] = "yes"
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, VERSIONS[0], strict=True)


@pytest.mark.parametrize("dataplane,etcd,expect", [
    ("linux", "", ["ServiceAccount/contiv-ksr", "ClusterRole/contiv-ksr", "ClusterRoleBinding/contiv-ksr",
                   "ConfigMap/contiv-agent", "Service/contiv-etcd", "Service/contiv-etcd-client",
                   "StatefulSet/contiv-etcd", "Deployment/contiv-ksr", "DaemonSet/contiv-node"]),
    ("vpp", "", ["ServiceAccount/contiv-ksr", "ClusterRole/contiv-ksr", "ClusterRoleBinding/contiv-ksr",
                 "ConfigMap/contiv-agent", "ConfigMap/contiv-vpp", "Service/contiv-etcd",
                 "Service/contiv-etcd-client", "StatefulSet/contiv-etcd", "Deployment/contiv-ksr",
                 "DaemonSet/contiv-node"]),
    ("linux", EXTERNAL, ["ServiceAccount/contiv-ksr", "ClusterRole/contiv-ksr", "ClusterRoleBinding/contiv-ksr",
                         "ConfigMap/contiv-agent", "Deployment/contiv-ksr", "DaemonSet/contiv-node"]),
])
def test_the_objects_rendered_and_their_order(dataplane, etcd, expect):
    objs = m.manifests(dataplane, etcd=etcd)
    assert [f"{o['kind']}/{o['metadata']['name']}" for o in objs] == expect
    assert all(o["metadata"].get("namespace") == "kube-system"
               for o in objs if not o["kind"].startswith("Cluster"))


@pytest.mark.parametrize("dataplane,etcd", VARIANTS)
def test_every_reference_resolves(dataplane, etcd):
    """What the schemas cannot see: selectors, volumes, ConfigMaps, service
    accounts, and $(VAR) references (Kubernetes leaves an unknown one as it is)."""
    objs = m.manifests(dataplane, etcd=etcd)
    maps = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
    accounts = {o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount"}
    workloads = [o for o in objs if o["kind"] in ("DaemonSet", "Deployment", "StatefulSet")]
    for w in workloads:
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert w["spec"]["selector"]["matchLabels"].items() <= labels.items()
        volumes = {v["name"]: v for v in pod(w).get("volumes", [])}
        assert pod(w).get("serviceAccountName", "default") in accounts | {"default"}
        for c in pod(w)["containers"] + pod(w).get("initContainers", []):
            for vm in c.get("volumeMounts", []):
                assert vm["name"] in volumes, (w["kind"], c["name"], vm)
            env = {e["name"] for e in c.get("env", [])}
            text = " ".join(c["command"])
            assert set(re.findall(r"\$\((\w+)\)", text)) <= env, (c["name"], text)
            if c["command"][:2] == ["/bin/sh", "-c"]:
                assert set(re.findall(r"\$(\w+)", text)) <= env, text
        for v in volumes.values():
            if "configMap" in v:
                assert v["configMap"]["name"] in maps
    for s in (o for o in objs if o["kind"] == "Service"):
        assert any(s["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
                   for w in workloads), s["metadata"]["name"]


# --- RBAC ---------------------------------------------------------------------------------

def test_the_cluster_role_grants_get_list_watch_on_exactly_the_six_reflected_kinds():
    objs = m.manifests()
    role = one(objs, "ClusterRole")
    granted = set()
    for r in role["rules"]:
        assert set(r) == {"apiGroups", "resources", "verbs"}  # no resourceNames, no nonResourceURLs
        granted |= {(g, res, v) for g in r["apiGroups"] for res in r["resources"] for v in r["verbs"]}
    kinds = {("", "namespaces"), ("", "pods"), ("", "services"), ("", "nodes"),
             ("discovery.k8s.io", "endpointslices"), ("networking.k8s.io", "networkpolicies")}
    assert granted == {(g, r, v) for g, r in kinds for v in ("get", "list", "watch")}
    from ksr.objects import KINDS  # the reflector's own list: RBAC must follow it
    assert {(k.group, k.resource) for k in KINDS} == kinds
    binding = one(objs, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    sa = one(objs, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": "kube-system"}]
    assert pod(one(objs, "Deployment"))["serviceAccountName"] == sa["metadata"]["name"]
    # nothing else gets an API token
    for kind in ("DaemonSet", "StatefulSet"):
        assert pod(one(objs, kind))["automountServiceAccountToken"] is False


# --- the node DaemonSet -------------------------------------------------------------------

def test_the_init_container_installs_the_cni_plugin_into_the_hosts_directories(tmp_path, capsys):
    """Run its very command under a scratch root: every file it writes must
    land in a host directory the pod mounts (else it is lost with the container)."""
    ds = one(m.manifests(), "DaemonSet")
    init = container(ds, "install-cni")
    cmd = init["command"]
    assert cmd == ["contivctl", "install", "cni", "--root", "/host", "--agent-socket", "/run/contiv/agent.sock",
                   "--interpreter", "/usr/bin/python3"]
    from contivctl.main import main
    assert main([*cmd[1:4], str(tmp_path), *cmd[5:]]) == 0, capsys.readouterr()
    # the plugin runs on the host, with the host's Python
    assert (tmp_path / "opt/cni/bin/contiv-cni").read_text().splitlines()[0] == "#!/usr/bin/python3 -IS"
    written = sorted("/" + str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["/etc/cni/net.d/10-contiv.conflist", "/opt/cni/bin/contiv-cni",
                       "/var/lib/contiv/install.json"]
    for path in written:
        mount = next(vm for vm in init["volumeMounts"]
                     if ("/host" + path).startswith(vm["mountPath"] + "/"))
        host = volume_of(ds, init, mount["mountPath"])["hostPath"]["path"]
        assert mount["mountPath"] == "/host" + host  # the same place on the host
    conf = json.loads((tmp_path / "etc/cni/net.d/10-contiv.conflist").read_text())
    assert conf["cniVersion"] == "1.0.0" and conf["plugins"][0] == {
        "type": "contiv-cni", "agentSocket": "/run/contiv/agent.sock"}
    # and the agent serves that socket in a directory of the host
    agent = container(ds, "agent")
    assert volume_of(ds, agent, "/run/contiv")["hostPath"]["path"] == "/run/contiv"


@pytest.mark.parametrize("dataplane", ["linux", "vpp"])
def test_the_node_pod_is_host_networked_privileged_and_tolerates_every_taint(dataplane):
    ds = one(m.manifests(dataplane), "DaemonSet")
    spec = pod(ds)
    assert spec["hostNetwork"] is True and spec["hostPID"] is True
    assert spec["tolerations"] == [{"operator": "Exists"}]  # no key, no effect: every taint
    agent = container(ds, "agent")
    assert agent["securityContext"] == {"privileged": True}
    mounts = {vm["mountPath"]: vm for vm in agent["volumeMounts"]}
    assert mounts["/var/run/netns"]["mountPropagation"] == "HostToContainer"
    assert mounts["/lib/modules"]["readOnly"] is True
    for path in ("/run/contiv", "/var/run/netns", "/var/lib/contiv", "/lib/modules"):
        assert volume_of(ds, agent, path)["hostPath"]["path"] == path
    assert {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in agent["env"]}["NODE_NAME"] == "spec.nodeName"
    assert ds["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1}


def test_the_linux_agent_command_parses_as_agent_run_and_reads_the_config_map():
    from contivctl.commands.agent import app
    objs = m.manifests()
    ds = one(objs, "DaemonSet")
    agent = container(ds, "agent")
    assert [c["name"] for c in pod(ds)["containers"]] == ["agent"]
    assert agent["command"][:3] == ["contivctl", "agent", "run"]
    params = click_command(app, "run").make_context("run", agent["command"][3:]).params
    assert params["node"] == "$(NODE_NAME)" and params["etcd"] == f"http://$(HOST_IP):{m.ETCD_NODE_PORT}"
    folder, key = os.path.split(params["config"])
    assert volume_of(ds, agent, folder)["configMap"]["name"] == "contiv-agent"
    assert key in one(objs, "ConfigMap", "contiv-agent")["data"]


@pytest.mark.parametrize("pods,services", [("10.1.0.0/16", "10.96.0.0/12"), ("10.244.0.0/14", "172.20.0.0/16")])
@pytest.mark.parametrize("dataplane", ["linux", "vpp"])
def test_the_agent_config_map_loads_through_the_agents_own_loader(tmp_path, dataplane, pods, services):
    data = one(m.manifests(dataplane, pod_cidr=pods, service_cidr=services), "ConfigMap", "contiv-agent")["data"]
    p = tmp_path / "agent.yaml"
    p.write_text(data["agent.yaml"] + (UPLINK if dataplane == "vpp" else ""))  # vpp: + the node's file
    cfg = load_config(str(p), node="x")
    assert (cfg.pod_cidr, cfg.service_cidr, cfg.dataplane, cfg.etcd) == (pods, services, dataplane, "")
    data = one(m.manifests(dataplane, etcd=EXTERNAL), "ConfigMap", "contiv-agent")["data"]
    p.write_text(data["agent.yaml"] + (UPLINK if dataplane == "vpp" else ""))
    assert load_config(str(p), node="x").etcd == EXTERNAL


def test_a_vpp_config_map_alone_lacks_the_uplink_which_is_why_each_node_has_its_file(tmp_path):
    p = tmp_path / "agent.yaml"
    p.write_text(one(m.manifests("vpp"), "ConfigMap", "contiv-agent")["data"]["agent.yaml"])
    with pytest.raises(InvalidInput, match="vpp_uplink"):
        load_config(str(p), node="x")


@pytest.mark.parametrize("etcd", ["", EXTERNAL])
def test_the_vpp_agent_runs_with_the_config_map_plus_the_nodes_own_file(tmp_path, etcd):
    """Run the container's shell command for real (paths moved under tmp_path,
    a stand-in contivctl recording its arguments)."""
    ds = one(m.manifests("vpp", etcd=etcd), "DaemonSet")
    agent = container(ds, "agent")
    sh, flag, script = agent["command"]
    assert (sh, flag) == ("/bin/sh", "-c")
    paths = re.findall(r"(?<=\s)(/[\w./-]+)", script)
    mounted = {vm["mountPath"]: volume_of(ds, agent, vm["mountPath"]) for vm in agent["volumeMounts"]}
    for path in paths:  # each a file of a mounted volume: the ConfigMap, the node's file, /run/contiv
        owner = next(mp for mp in mounted if path == mp or path.startswith(mp + "/"))
        vol = mounted[owner]
        assert "configMap" in vol or "hostPath" in vol, path
    node_file = f"/host{m.VPP_NODE_FILE}"
    assert mounted[node_file]["hostPath"] == {"path": m.VPP_NODE_FILE, "type": "File"}
    cm = one(m.manifests("vpp", etcd=etcd), "ConfigMap", "contiv-agent")["data"]["agent.yaml"]
    for path, content in (("/etc/contiv/agent.yaml", cm), (node_file, UPLINK)):
        (tmp_path / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path.lstrip("/")).write_text(content)
    (tmp_path / "run/contiv").mkdir(parents=True)
    (tmp_path / "bin").mkdir()
    record = tmp_path / "argv.json"
    fake = tmp_path / "bin/contivctl"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    fake.chmod(0o755)
    moved = re.sub(r"(?<=\s)(/[\w./-]+)", lambda x: str(tmp_path) + x.group(1), script)
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "NODE_NAME": "node-1", "HOST_IP": "192.0.2.7"}
    subprocess.run(["/bin/sh", "-c", moved], env=env, check=True)
    argv = json.loads(record.read_text())
    from contivctl.commands.agent import app
    params = click_command(app, "run").make_context("run", argv[2:]).params
    assert argv[:2] == ["agent", "run"] and params["node"] == "node-1"
    assert params["etcd"] == ("" if etcd else f"http://192.0.2.7:{m.ETCD_NODE_PORT}")
    cfg = load_config(params["config"], node=params["node"], etcd=params["etcd"])
    assert (cfg.dataplane, cfg.vpp_uplink, cfg.vpp_uplink_cidr) == ("vpp", "eth1", "192.168.56.110/24")
    assert cfg.etcd == (etcd or f"http://192.0.2.7:{m.ETCD_NODE_PORT}")


def test_vpp_adds_the_vswitch_container_its_config_map_and_run_vpp():
    objs = m.manifests("vpp")
    ds = one(objs, "DaemonSet")
    assert [c["name"] for c in pod(ds)["containers"]] == ["agent", "vswitch"]
    vsw, agent = container(ds, "vswitch"), container(ds, "agent")
    assert vsw["command"] == ["vpp", "-c", "/etc/vpp/startup.conf"]
    assert vsw["securityContext"] == {"privileged": True}
    assert volume_of(ds, vsw, "/etc/vpp")["configMap"]["name"] == "contiv-vpp"
    for c in (vsw, agent):  # the sockets' directory, shared, on the host
        assert volume_of(ds, c, "/run/vpp")["hostPath"]["path"] == "/run/vpp"
    assert volume_of(ds, vsw, "/dev/shm") == {"name": "vpp-shm", "emptyDir": {"medium": "Memory"}}
    conf = one(objs, "ConfigMap", "contiv-vpp")["data"]["startup.conf"]
    d = AgentConfig()  # where the agent looks for VPP's sockets
    assert f"socksvr {{ socket-name {d.vpp_api_socket} }}" in conf
    assert f"statseg {{ socket-name {d.vpp_stats_socket} page-size 4k }}" in conf
    # install node's renderer, not a second one; its systemd header replaced
    body = files.vpp_startup(files.NodeOptions("vpp", "n", "/usr/bin/contivctl",
                                               {"vpp_uplink": "eth1", "vpp_uplink_cidr": "10.0.0.2/24"}))
    assert conf.endswith(body[body.index("\nunix {"):])
    assert "systemctl" not in conf and "kubectl -n kube-system rollout restart" in conf


def test_a_linux_node_has_no_vpp_at_all():
    objs = m.manifests("linux")
    ds = one(objs, "DaemonSet")
    assert "contiv-vpp" not in {o["metadata"]["name"] for o in objs}
    assert not [v for v in pod(ds)["volumes"] if "vpp" in v["name"] or "vpp" in json.dumps(v)]


# --- etcd and the reflector ---------------------------------------------------------------

def test_the_bundled_etcd_is_reached_through_its_node_port_on_each_nodes_address():
    objs = m.manifests()
    sts = one(objs, "StatefulSet")
    assert sts["spec"]["replicas"] == 1 and pod(sts)["hostNetwork"] is True
    headless, client = one(objs, "Service", "contiv-etcd"), one(objs, "Service", "contiv-etcd-client")
    assert sts["spec"]["serviceName"] == "contiv-etcd" and headless["spec"]["clusterIP"] == "None"
    etcd = container(sts, "etcd")
    assert etcd["command"][0] == "/usr/local/bin/etcd"
    assert f"--listen-client-urls=http://0.0.0.0:{m.ETCD_PORT}" in etcd["command"]
    port = client["spec"]["ports"][0]
    assert (port["targetPort"], port["nodePort"], client["spec"]["type"]) == (m.ETCD_PORT, 32379, "NodePort")
    assert "volumeClaimTemplates" not in sts["spec"] and pod(sts)["volumes"] == [{"name": "data", "emptyDir": {}}]
    endpoint = "http://$(HOST_IP):32379"
    for c in (container(one(objs, "Deployment"), "ksr"), container(one(objs, "DaemonSet"), "agent")):
        assert endpoint in c["command"]
        assert {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}} in c["env"]


@pytest.mark.parametrize("dataplane", ["linux", "vpp"])
def test_an_external_etcd_drops_the_bundled_one_and_reaches_agent_and_reflector(dataplane):
    objs = m.manifests(dataplane, etcd=EXTERNAL)
    assert not [o for o in objs if "etcd" in o["metadata"]["name"]]
    ksr = container(one(objs, "Deployment"), "ksr")
    assert ksr["command"][ksr["command"].index("--etcd") + 1] == EXTERNAL
    assert yaml.safe_load(one(objs, "ConfigMap", "contiv-agent")["data"]["agent.yaml"])["etcd"] == EXTERNAL
    agent = container(one(objs, "DaemonSet"), "agent")
    assert "--etcd" not in " ".join(agent["command"]) and "HOST_IP" not in json.dumps(agent)


def test_a_unix_socket_etcd_mounts_its_directory_where_agent_and_reflector_dial_it():
    objs = m.manifests(etcd=UNIX)
    for w, name in ((one(objs, "Deployment"), "ksr"), (one(objs, "DaemonSet"), "agent")):
        c = container(w, name)
        assert volume_of(w, c, "/run/etcd")["hostPath"] == {"path": "/run/etcd", "type": "Directory"}


def test_the_reflector_runs_two_replicas_with_probes_on_its_health_endpoint():
    from contivctl.commands.ksr import app, run
    dep = one(m.manifests(), "Deployment")
    assert dep["spec"]["replicas"] == 2 and pod(dep)["hostNetwork"] is True
    ksr = container(dep, "ksr")
    assert ksr["command"][:3] == ["contivctl", "ksr", "run"]
    params = click_command(app, "run").make_context("run", ksr["command"][3:]).params
    assert params["etcd"] == "http://$(HOST_IP):32379" and params["identity"] == "$(POD_NAME)"
    # the port the reflector serves by default is the one probed
    default = inspect.signature(run).parameters["health_address"].default.default
    assert default.rsplit(":", 1)[1] == str(m.KSR_HEALTH_PORT) == "9403"
    assert ksr["ports"] == [{"name": "health", "containerPort": 9403, "protocol": "TCP"}]
    assert ksr["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert ksr["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert ksr["resources"]["requests"] and "privileged" not in ksr["securityContext"]


# --- input --------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,needle", [
    ({"dataplane": "dpdk"}, "--dataplane"),
    ({"pod_cidr": "10.1.0.0/33"}, "--pod-cidr"),
    ({"pod_cidr": "10.1.0.1/16"}, "--pod-cidr"),  # host bits set
    ({"pod_cidr": "fd00::/48"}, "--pod-cidr"),
    ({"pod_cidr": "10.1.0.0/24"}, "--pod-cidr"),  # no room for /24 node subnets
    ({"service_cidr": "services"}, "--service-cidr"),
    ({"service_cidr": "fd00:96::/108"}, "--service-cidr"),
    ({"pod_cidr": "10.0.0.0/8", "service_cidr": "10.96.0.0/12"}, "overlaps"),
    ({"etcd": "10.0.0.1:2379"}, "--etcd"),
    ({"etcd": "http://10.0.0.1"}, "--etcd"),
    ({"etcd": "http://10.0.0.1:99999"}, "--etcd"),
    ({"etcd": "http://10.0.0.1:2379/v3"}, "--etcd"),
    ({"etcd": "http://bad_host:2379"}, "--etcd"),
    ({"etcd": "http://[fd00::1]:2379"}, "--etcd"),  # the agent's store cannot dial IPv6 literals
    ({"etcd": "http://u:p@10.0.0.1:2379"}, "--etcd"),
    ({"etcd": "https://10.0.0.1:2379"}, "TLS"),
    ({"etcd": "ftp://10.0.0.1:2379"}, "--etcd"),
    ({"etcd": "unix://run/etcd.sock"}, "--etcd"),
    ({"etcd": "unix:///run/my etcd.sock"}, "--etcd"),
    ({"namespace": "Kube-System"}, "--namespace"),
    ({"namespace": "a" * 64}, "--namespace"),
    ({"namespace": ""}, "--namespace"),
    ({"image": "contivctl 0.1"}, "--image"),
    ({"image": "Contivctl:0.1.0"}, "--image"),
    ({"image": ""}, "--image"),
    ({"image": "contivctl:0.1.0;rm -rf /"}, "--image"),
])
def test_bad_input_raises_invalid_input_naming_it(kw, needle):
    with pytest.raises(InvalidInput) as e:
        m.manifests(**kw)
    assert needle in e.value.message


@pytest.mark.parametrize("kw", [
    {"etcd": "http://etcd.example.com:2379"}, {"etcd": "http://etcd:2379/"}, {"etcd": UNIX},
    {"image": "registry.example.com:5000/team/contivctl:1.2.3"}, {"image": "contivctl@sha256:" + "a" * 64},
    {"namespace": "contiv"}, {"pod_cidr": "10.244.0.0/16", "service_cidr": "10.96.0.0/16"},
])
def test_good_input_is_taken(kw):
    objs = m.manifests(**kw)
    ds = one(objs, "DaemonSet")
    assert container(ds, "agent")["image"] == kw.get("image", m.DEFAULT_IMAGE)
    assert ds["metadata"]["namespace"] == kw.get("namespace", "kube-system")


# --- output -------------------------------------------------------------------------------

def test_yaml_is_one_stream_that_loads_back_to_the_objects():
    objs = m.manifests("vpp")
    text = m.to_yaml(objs)
    assert text.startswith("# contivctl on Kubernetes")
    assert [d for d in yaml.safe_load_all(text) if d is not None] == objs
    assert not re.search(r"[&*]id\d", text)  # no anchors/aliases for objects used twice
    assert "  agent.yaml: |\n" in text and "  startup.conf: |\n" in text  # files as literal blocks
    assert text.count("\n---\n# ") == len(objs)  # each object with its comment


def test_rendering_is_deterministic_across_interpreters():
    code = "from contivctl.install.manifests import manifests, to_yaml; print(to_yaml(manifests('vpp')), end='')"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert outs == {m.to_yaml(m.manifests("vpp"))}
    assert m.manifests(etcd=EXTERNAL) == m.manifests(etcd=EXTERNAL)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(cli.manifests_cmd)
    return app


def test_the_command_prints_yaml_by_default_and_a_json_list():
    runner = CliRunner()
    r = runner.invoke(_app(), ["--dataplane", "vpp", "--pod-cidr", "10.244.0.0/16"])
    assert r.exit_code == 0, r.output
    assert r.stdout == m.to_yaml(m.manifests("vpp", pod_cidr="10.244.0.0/16"))
    r = runner.invoke(_app(), ["-o", "json", "--etcd", EXTERNAL, "--namespace", "contiv", "--image", "r.io/c:1"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"apiVersion": "v1", "kind": "List", "items": m.manifests(
        etcd=EXTERNAL, namespace="contiv", image="r.io/c:1")}


@pytest.mark.parametrize("args,needle", [(["-o", "table"], "--output"), (["--pod-cidr", "x"], "--pod-cidr")])
def test_the_command_raises_invalid_input_for_the_cli_to_report(args, needle):
    r = CliRunner().invoke(_app(), args)
    assert isinstance(r.exception, InvalidInput) and needle in r.exception.message and not r.stdout


def test_the_commands_defaults_are_the_renderers():
    cmd = {k: p.default.default for k, p in inspect.signature(cli.manifests_cmd).parameters.items()}
    ren = {k: p.default for k, p in inspect.signature(m.manifests).parameters.items()}
    assert {k: cmd[k] for k in ren} == ren and cmd["output"] == "yaml"


def test_importing_the_command_imports_nothing_heavy():
    code = ("import sys, contivctl.commands.install_manifests\n"
            "print(' '.join(sorted(n for n in sys.modules if n.split('.')[0] in "
            "('agent', 'yaml', 'json', 'orjson', 'rich') or n == 'contivctl.install.manifests')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.split() == []
