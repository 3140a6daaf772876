"""The Kubernetes objects a cluster needs to run contivctl, rendered as dicts (pure).

``contivctl install manifests`` prints them (``| kubectl apply -f -``); what
each object is for, and every assumption made here, is in docs/install.md.
No I/O and no clock: the same arguments give the same objects, so a
re-rendered manifest diffs cleanly against the applied one. Every argument is
checked first; bad input raises :class:`~agent.errors.InvalidInput` naming
the option.

The bootstrap order shapes everything: pods get their network from the
agents, the agents need etcd, the reflector feeds the agents. So etcd, the
reflector and the agents run in the host's network namespace: none of them
may need the pod network, cluster DNS, or a Service that the agents program.
"""
from __future__ import annotations

import ipaddress
import json
import posixpath
import re
from urllib.parse import urlsplit

from agent.config import DATAPLANES, DEFAULT_SOCKET, AgentConfig
from agent.errors import InvalidInput

#: No image is published: a placeholder to build and push (docs/install.md, "The image").
DEFAULT_IMAGE = "contivctl:0.1.0"
#: The etcd release image kubeadm 1.32 runs for the control plane (etcd 3.5, /usr/local/bin/etcd).
ETCD_IMAGE = "registry.k8s.io/etcd:3.5.16-0"
#: etcd's ports on its node: not 2379/2380, which a kubeadm control-plane node's own etcd holds.
ETCD_PORT, ETCD_PEER_PORT = 12379, 12380
#: How agents and the reflector reach the bundled etcd: this NodePort at their own node's address.
ETCD_NODE_PORT = 32379
#: The reflector's health endpoint (``contivctl ksr run --health-address``, default 0.0.0.0:9403).
KSR_HEALTH_PORT = 9403
#: Each VPP node's own settings (vpp_uplink, vpp_uplink_cidr[, vpp_uplink_gateway]): a file on the node.
VPP_NODE_FILE = "/etc/contiv/vpp-uplink.yaml"
#: The kinds the reflector mirrors (ksr/objects.py), as (API group, resource).
REFLECTED = (("", "namespaces"), ("", "pods"), ("", "services"), ("", "nodes"),
             ("discovery.k8s.io", "endpointslices"), ("networking.k8s.io", "networkpolicies"))

_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"  # DNS-1123
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PATH = re.compile(r"(?:/[A-Za-z0-9_.,+=@:~-]+)+")
_COMP = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"  # [registry[:port]/]path[:tag][@sha256:digest]
_IMAGE = re.compile(rf"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?::[0-9]+)?/)?{_COMP}(?:/{_COMP})*"
                    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?")
_PART_OF = {"app.kubernetes.io/part-of": "contivctl"}
#: A node is not-ready until its runtime has a CNI configuration (the contiv-node init container
#: writes it); etcd and the reflector need not wait for that, nor for workers to join.
_CONTROL_TOLERATIONS = [{"key": k, "operator": "Exists", "effect": "NoSchedule"}
                        for k in ("node-role.kubernetes.io/control-plane", "node.kubernetes.io/not-ready")]
_ABOUT = {
    "ServiceAccount": "The reflector's identity towards the API server.",
    "ClusterRole": "Read-only (get, list, watch) on exactly the kinds the reflector mirrors.",
    "ClusterRoleBinding": "That role, to the reflector's account.",
    "ConfigMap/contiv-agent": "The agent's settings, the same on every node.",
    "ConfigMap/contiv-vpp": "VPP's startup configuration (the vswitch container's).",
    "Service/contiv-etcd": "Headless: the bundled etcd StatefulSet's governing Service.",
    "Service/contiv-etcd-client": f"NodePort {ETCD_NODE_PORT}: agents and the reflector reach etcd at "
                                  "their own node's address.",
    "StatefulSet": "The bundled one-member etcd, on the host network (the pod network needs it first).",
    "Deployment": "The reflector: Kubernetes objects into etcd. Two replicas; one leads (an etcd lease).",
    "DaemonSet": "Every node: the CNI plugin and conflist (init container), the agent (and VPP).",
}


def manifests(dataplane: str = "linux", pod_cidr: str = "10.1.0.0/16", service_cidr: str = "10.96.0.0/12",
              etcd: str = "", image: str = DEFAULT_IMAGE, namespace: str = "kube-system") -> list[dict]:
    """Every object, in the order ``kubectl apply`` should create them.

    ``etcd``: empty for the bundled one-member etcd (a StatefulSet), else an
    external ``http://HOST:PORT`` or ``unix:///PATH`` the nodes themselves reach."""
    pods, services = _check(dataplane, pod_cidr, service_cidr, etcd, image, namespace)
    ns, vpp = namespace, dataplane == "vpp"
    objs = _rbac(ns) + [_config_map("contiv-agent", ns, {"agent.yaml": _agent_yaml(ns, dataplane, pods,
                                                                                   services, etcd)})]
    if vpp:
        objs.append(_config_map("contiv-vpp", ns, {"startup.conf": _vpp_startup(ns)}))
    if not etcd:
        objs += _etcd(ns)
    return objs + [_ksr(ns, image, etcd), _node(ns, image, vpp, etcd)]


def to_yaml(objs: list[dict]) -> str:
    """``objs`` as one multi-document YAML stream, with a header and a comment per object."""
    import yaml  # noqa: PLC0415

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):  # an object used twice prints twice, never as &id001/*id001
            return True

    # multi-line strings (the ConfigMaps' files) as literal blocks: readable and diffable
    Dumper.add_representer(str, lambda d, s: d.represent_scalar(
        "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))
    out = ["# contivctl on Kubernetes, rendered by `contivctl install manifests`.",
           "# kubectl apply -f THIS; what each object is for and why: docs/install.md."]
    for o in objs:
        about = _ABOUT.get(f"{o['kind']}/{o['metadata']['name']}") or _ABOUT.get(o["kind"])
        out += ["---"] + ([f"# {about}"] if about else [])
        out.append(yaml.dump(o, Dumper=Dumper, sort_keys=False, width=100).rstrip("\n"))
    return "\n".join(out) + "\n"


def _check(dataplane, pod_cidr, service_cidr, etcd, image, namespace) -> tuple[str, str]:
    """Everything checked; the CIDRs in their canonical form."""
    if dataplane not in DATAPLANES:
        raise InvalidInput(f"--dataplane {dataplane!r} is not one of {', '.join(DATAPLANES)}")
    pods, services = _cidr(pod_cidr, "--pod-cidr"), _cidr(service_cidr, "--service-cidr")
    if pods.prefixlen >= AgentConfig.node_prefix:
        raise InvalidInput(f"--pod-cidr {pods} is too small: each node takes a /{AgentConfig.node_prefix} of it")
    if pods.overlaps(services):
        raise InvalidInput(f"--pod-cidr {pods} overlaps --service-cidr {services}")
    if etcd:
        _check_etcd(etcd)
    if not re.fullmatch(_LABEL, namespace):
        raise InvalidInput(f"--namespace {namespace!r} is not a valid namespace name",
                           hint="at most 63 lower-case letters, digits and '-' (a DNS-1123 label)")
    if len(image) > 255 or not _IMAGE.fullmatch(image):
        raise InvalidInput(f"--image {image!r} is not a valid image reference",
                           hint=f"[REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], e.g. {DEFAULT_IMAGE}")
    return str(pods), str(services)


def _cidr(value: str, what: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(value)
    except ValueError as e:
        raise InvalidInput(f"{what} {value!r}: {e}") from None
    if net.version != 4:  # the agent's pod network is IPv4 only so far (agent.config)
        raise InvalidInput(f"{what} {net}: only IPv4 is supported")
    return net


def _check_etcd(url: str) -> None:
    if url.startswith("unix://"):
        if not _PATH.fullmatch(url[len("unix://"):]):
            raise InvalidInput(f"--etcd {url!r}: expected unix:///ABSOLUTE/PATH (letters, digits, _.,+=@:~-)")
        return
    if url.startswith("https://"):  # agent/store/etcd.py refuses it: better here than in every agent
        raise InvalidInput(f"--etcd {url!r}: TLS endpoints are not supported yet",
                           hint="the agents and the reflector speak plain http to etcd")
    u = urlsplit(url)
    try:
        port = u.port
    except ValueError:  # not a number, or out of range
        port = None
    # a name or an IPv4 address: the agent's store joins host and port with ':' for gRPC (no [v6])
    host = u.hostname if u.hostname and _HOST.fullmatch(u.hostname) else ""
    if u.scheme != "http" or not host or not port or u.path not in ("", "/") or u.query or u.fragment \
            or u.username is not None:
        raise InvalidInput(f"--etcd {url!r} is not http://HOST:PORT or unix:///PATH",
                           hint="HOST: an IPv4 address, or a name the nodes' own resolver knows (not cluster DNS)")


def _meta(name: str, namespace: str = "") -> dict:
    return {"name": name, **({"namespace": namespace} if namespace else {}),
            "labels": {"app.kubernetes.io/name": name, **_PART_OF}}


def _config_map(name: str, ns: str, data: dict) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, ns), "data": data}


def _field_env(name: str, path: str) -> dict:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _host(name: str, path: str, kind: str = "DirectoryOrCreate") -> dict:
    return {"name": name, "hostPath": {"path": path, "type": kind}}


def _workload(kind: str, name: str, ns: str, spec: dict, pod: dict) -> dict:
    labels = {"app.kubernetes.io/name": name}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": _meta(name, ns),
            "spec": {**spec, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": {**labels, **_PART_OF}}, "spec": pod}}}


def _rbac(ns: str) -> list[dict]:
    rules = [{"apiGroups": [g], "resources": [r for gg, r in REFLECTED if gg == g],
              "verbs": ["get", "list", "watch"]} for g in sorted({g for g, _ in REFLECTED})]
    rbac = "rbac.authorization.k8s.io"
    return [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("contiv-ksr", ns)},
            {"apiVersion": f"{rbac}/v1", "kind": "ClusterRole", "metadata": _meta("contiv-ksr"), "rules": rules},
            {"apiVersion": f"{rbac}/v1", "kind": "ClusterRoleBinding", "metadata": _meta("contiv-ksr"),
             "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "contiv-ksr"},
             "subjects": [{"kind": "ServiceAccount", "name": "contiv-ksr", "namespace": ns}]}]


def _agent_yaml(ns: str, dataplane: str, pods: str, services: str, etcd: str) -> str:
    q = json.dumps  # a JSON string is a YAML double-quoted scalar: "10.1.0.0/16" stays a string
    out = ["# The Contiv agent's settings on every node (`contivctl install manifests`): the keys",
           "# of `contivctl agent run` (docs/cli.md). The node's name is on its command line",
           "# (--node, the pod's spec.nodeName). After a change:",
           f"#   kubectl -n {ns} rollout restart daemonset/contiv-node",
           f"dataplane: {q(dataplane)}", f"pod_cidr: {q(pods)}", f"service_cidr: {q(services)}"]
    out += [f"etcd: {q(etcd)}"] if etcd else [
        f"# etcd: on the command line too (--etcd http://$(HOST_IP):{ETCD_NODE_PORT}): the bundled",
        "# etcd's NodePort at the node's own address, which one file for all nodes cannot hold"]
    if dataplane == "vpp":
        out += [f"# vpp_uplink, vpp_uplink_cidr (and vpp_uplink_gateway) differ per node: {VPP_NODE_FILE}",
                "# on each node, appended to this file each time the agent starts (docs/install.md)"]
    return "\n".join(out) + "\n"


def _vpp_startup(ns: str) -> str:
    """VPP's startup.conf from ``install node``'s renderer under a header of ours."""
    from contivctl.install.files import NodeOptions, vpp_startup  # noqa: PLC0415
    # It checks a whole VPP node's settings, but writes only the socket paths (the agent's
    # defaults here): the per-node uplink is absent from it, so RFC 5737 addresses stand in.
    text = vpp_startup(NodeOptions("vpp", "node", "/usr/local/bin/contivctl",
                                   {"vpp_uplink": "uplink", "vpp_uplink_cidr": "192.0.2.1/24"}))
    lines = text.splitlines()
    while lines and lines[0].startswith("#"):  # its header is about install node and systemd
        lines.pop(0)
    return "\n".join([
        "# VPP's configuration in the contiv-node DaemonSet's vswitch container (`contivctl install",
        "# manifests`), read when VPP starts. After a change (VPP restarts empty and the agent",
        f"# programs it again): kubectl -n {ns} rollout restart daemonset/contiv-node",
        "# The agent finds the API and stats sockets in /run/vpp, shared by both containers."] + lines) + "\n"


def _etcd(ns: str) -> list[dict]:
    port = {"name": "client", "port": ETCD_PORT, "targetPort": ETCD_PORT, "protocol": "TCP"}
    select = {"app.kubernetes.io/name": "contiv-etcd"}
    peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"  # one member: its peer URL never leaves the node
    args = ["--name=contiv-etcd", "--data-dir=/var/lib/etcd", f"--listen-client-urls=http://0.0.0.0:{ETCD_PORT}",
            f"--advertise-client-urls=http://$(HOST_IP):{ETCD_PORT}", f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}", f"--initial-cluster=contiv-etcd={peer}",
            # uncompacted, every pod start and endpoint change stays a revision until the 2 GiB
            # quota stops all writes; watchers resume, or relist (410), across a compaction
            "--auto-compaction-mode=periodic", "--auto-compaction-retention=1h"]
    pod = {"hostNetwork": True, "priorityClassName": "system-cluster-critical",
           "automountServiceAccountToken": False, "tolerations": _CONTROL_TOLERATIONS,
           "containers": [{
               "name": "etcd", "image": ETCD_IMAGE, "command": ["/usr/local/bin/etcd", *args],
               "env": [_field_env("HOST_IP", "status.hostIP")],
               "ports": [{"name": "client", "containerPort": ETCD_PORT, "protocol": "TCP"}],
               # alive despite a NOSPACE alarm (as kubeadm probes its etcd): a restart cannot clear it
               "livenessProbe": {"httpGet": {"path": "/health?exclude=NOSPACE&serializable=true",
                                             "port": ETCD_PORT}, "initialDelaySeconds": 10, "failureThreshold": 6},
               "readinessProbe": {"httpGet": {"path": "/health", "port": ETCD_PORT}},
               "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
               "volumeMounts": [{"name": "data", "mountPath": "/var/lib/etcd"}]}],
           # emptyDir, not a PVC template: a fresh cluster often has no storage provisioner, and a
           # claim that never binds would keep the whole pod network down. It outlives container
           # restarts, not the pod's deletion or move (docs/install.md: use --etcd in production).
           "volumes": [{"name": "data", "emptyDir": {}}]}
    return [{"apiVersion": "v1", "kind": "Service", "metadata": _meta("contiv-etcd", ns),
             "spec": {"clusterIP": "None", "selector": select, "ports": [port]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": _meta("contiv-etcd-client", ns),
             "spec": {"type": "NodePort", "selector": select, "ports": [{**port, "nodePort": ETCD_NODE_PORT}]}},
            _workload("StatefulSet", "contiv-etcd", ns, {"serviceName": "contiv-etcd", "replicas": 1}, pod)]


def _etcd_access(etcd: str) -> tuple[str, list[dict], list[dict], list[dict]]:
    """(endpoint, env, volume mounts, volumes) for a container that talks to etcd."""
    if not etcd:  # the bundled etcd: its NodePort at this node's address (no cluster DNS needed)
        return f"http://$(HOST_IP):{ETCD_NODE_PORT}", [_field_env("HOST_IP", "status.hostIP")], [], []
    if etcd.startswith("unix://"):  # an etcd listening on a unix socket on every node
        d = posixpath.dirname(etcd[len("unix://"):])
        return etcd, [], [{"name": "etcd-socket", "mountPath": d}], [_host("etcd-socket", d, "Directory")]
    return etcd, [], [], []


def _ksr(ns: str, image: str, etcd: str) -> dict:
    endpoint, env, mounts, volumes = _etcd_access(etcd)
    container = {
        "name": "ksr", "image": image,
        # two replicas are safe: they elect a leader through an etcd lease, and only it writes
        "command": ["contivctl", "ksr", "run", "--etcd", endpoint, "--id", "$(POD_NAME)"],
        "env": [_field_env("POD_NAME", "metadata.name"), *env],
        # ASSUMED (docs/install.md): `ksr run` serves /healthz (alive) and /readyz (a standby, or a
        # leader that has listed every kind) on its --health-address, by default 0.0.0.0:9403
        "ports": [{"name": "health", "containerPort": KSR_HEALTH_PORT, "protocol": "TCP"}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "initialDelaySeconds": 15},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "health"}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
        # it only reads the API and writes etcd, over the network
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        **({"volumeMounts": mounts} if mounts else {})}
    # host network: the reflector must not depend on the pod network it feeds; its host port
    # (declared above) also keeps the two replicas on two nodes
    pod = {"hostNetwork": True, "serviceAccountName": "contiv-ksr", "priorityClassName": "system-cluster-critical",
           "tolerations": _CONTROL_TOLERATIONS, "containers": [container], **({"volumes": volumes} if volumes else {})}
    return _workload("Deployment", "contiv-ksr", ns, {"replicas": 2}, pod)


def _node(ns: str, image: str, vpp: bool, etcd: str) -> dict:
    endpoint, env, etcd_mounts, etcd_volumes = _etcd_access(etcd)
    run = posixpath.dirname(DEFAULT_SOCKET)
    command = ["contivctl", "agent", "run", "--config", "/etc/contiv/agent.yaml", "--node", "$(NODE_NAME)"]
    command += [] if etcd else ["--etcd", endpoint]
    # /run/contiv: the agent's socket, where the host's CNI plugin dials it; /var/lib/contiv: its
    # state directory, on the host so that nothing written there goes with the container
    mounts = [{"name": "contiv-run", "mountPath": run}, {"name": "contiv-lib", "mountPath": "/var/lib/contiv"},
              {"name": "agent-config", "mountPath": "/etc/contiv", "readOnly": True},
              # the runtime pins pods' namespaces there after this container started: HostToContainer
              # shows those mounts here. Not Bidirectional: the agent pins no namespace of its own.
              {"name": "netns", "mountPath": "/var/run/netns", "mountPropagation": "HostToContainer"},
              # for `modprobe` in this container where the kernel does not autoload (docs/install.md)
              {"name": "modules", "mountPath": "/lib/modules", "readOnly": True}, *etcd_mounts]
    volumes = [_host("cni-bin", "/opt/cni/bin"), _host("cni-conf", "/etc/cni/net.d"), _host("contiv-run", run),
               _host("contiv-lib", "/var/lib/contiv"), _host("netns", "/var/run/netns"),
               _host("modules", "/lib/modules", "Directory"),
               {"name": "agent-config", "configMap": {"name": "contiv-agent"}}, *etcd_volumes]
    if vpp:
        # the shared settings, then this node's uplink: YAML mappings, concatenated (a key of the
        # node's file wins); at every start of the container, so an edit needs no new pod
        merged = f"{run}/agent.yaml"
        shell = ["--config", merged, "--node", '"$NODE_NAME"']
        shell += [] if etcd else ["--etcd", f'"http://$HOST_IP:{ETCD_NODE_PORT}"']
        command = ["/bin/sh", "-c", f"cat /etc/contiv/agent.yaml /host{VPP_NODE_FILE} > {merged} && exec "
                   + " ".join(command[:3] + shell)]
        mounts += [{"name": "vpp-run", "mountPath": "/run/vpp"},
                   {"name": "vpp-uplink", "mountPath": f"/host{VPP_NODE_FILE}", "readOnly": True}]
        # File: a node without it does not start the pod, and an event names the file
        volumes += [_host("vpp-run", "/run/vpp"), _host("vpp-uplink", VPP_NODE_FILE, "File"),
                    {"name": "vpp-config", "configMap": {"name": "contiv-vpp"}},
                    {"name": "vpp-shm", "emptyDir": {"medium": "Memory"}}]
    containers = [{
        "name": "agent", "image": image, "command": command, "env": [_field_env("NODE_NAME", "spec.nodeName"), *env],
        # privileged: it creates veths and moves them into pods' namespaces (setns), programs links,
        # routes and neighbours (netlink), nftables and conntrack, writes sysctls (/proc/sys is
        # read-only in an unprivileged container) and talks to VPP over its sockets
        "securityContext": {"privileged": True},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}, "volumeMounts": mounts}]
    if vpp:
        containers.append({
            "name": "vswitch", "image": image, "command": ["vpp", "-c", "/etc/vpp/startup.conf"],
            # privileged: AF_PACKET sockets on the node's interfaces, locked memory, CPU pinning
            "securityContext": {"privileged": True},
            # no limits: a throttled or OOM-killed VPP stops every pod's traffic. Measured ~285 MiB
            # resident idle (4 KiB pages: heap, buffers, stats segment in memfd memory; no hugepages)
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
            "volumeMounts": [{"name": "vpp-run", "mountPath": "/run/vpp"},
                             {"name": "vpp-config", "mountPath": "/etc/vpp", "readOnly": True},
                             # VPP's shared-memory API segments (global_vm, vpe-api: 81 MiB of sparse
                             # files, ~200 KiB used): memory-backed, not the runtime's 64 MiB default
                             {"name": "vpp-shm", "mountPath": "/dev/shm"}]})
    pod = {
        # host network: the agent programs the node's own namespace (and VPP takes the node's
        # interfaces). hostPID: some runtimes (cri-dockerd) name a pod's namespace /proc/PID/ns/net;
        # without the host's PIDs the agent would refuse such a pod as having no namespace, and its
        # IPAM garbage collection would release the address of a pod that still runs
        "hostNetwork": True, "hostPID": True, "priorityClassName": "system-node-critical",
        "automountServiceAccountToken": False,
        "tolerations": [{"operator": "Exists"}],  # every taint: without its agent a node has no pod network
        "initContainers": [{
            "name": "install-cni", "image": image,
            # the plugin and a conflist (CNI 1.0.0 by default) into the host's directories, and
            # install's record of them into the host's /var/lib/contiv: without that record, the
            # next run (an upgrade) would take its own files for someone else's and refuse
            # the plugin runs on the host: with the host's Python, not the image's
            "command": ["contivctl", "install", "cni", "--root", "/host", "--agent-socket", DEFAULT_SOCKET,
                        "--interpreter", "/usr/bin/python3"],
            # root with the runtime's default capabilities writes root's directories; spc_t lets
            # it on SELinux hosts, whose labels on those directories refuse an ordinary container
            "securityContext": {"seLinuxOptions": {"type": "spc_t", "level": "s0"}},
            "volumeMounts": [{"name": "cni-bin", "mountPath": "/host/opt/cni/bin"},
                             {"name": "cni-conf", "mountPath": "/host/etc/cni/net.d"},
                             {"name": "contiv-lib", "mountPath": "/host/var/lib/contiv"}]}],
        "containers": containers, "volumes": volumes}
    # one node at a time; pods keep their network while their agent restarts
    return _workload("DaemonSet", "contiv-node", ns, {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}}, pod)
