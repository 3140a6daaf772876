"""Drift check: docs/api.yaml, the contract (``agent/api/contract.py``), the
router, the client and the facade describe one and the same API.

* endpoints: every ``ENDPOINTS`` entry (and ``CNI_PATH``) is registered by the
  router and documented with the same method and path, and nothing else is;
* parameters: the documented query parameters / request-body properties of an
  endpoint are its declared ``Param``s, with the same required-ness;
* methods: ``NodeAPI``, ``AgentClient`` and ``AgentFacade`` have the same
  methods with the same parameters, and each (but ``cni``) has an endpoint;
* results: a documented 200 body names the fields of the endpoint's record;
* a round trip: the real router behind a real ``APIServer`` on a unix socket,
  over a fake ``NodeAPI``, driven by an ``AgentClient`` -- every method comes
  back with an equal record, bad parameters are refused naming them.

No root needed: the socket lives in a temporary directory.
"""
from __future__ import annotations

import dataclasses
import inspect
import shutil
import tempfile
import types
from pathlib import Path

import pytest
import yaml

from agent import errors
from agent.api.client import AgentClient
from agent.api.contract import CNI_PATH, ENDPOINTS, NodeAPI
from agent.api.routes import CNI_HEADERS, build_router
from agent.api.server import APIServer
from agent.facade import AgentFacade
from agent.model import api as rec
from tests.unit.api_samples import CNI_REPLY, FIXED

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
KINDS = {"int": "integer", "str": "string"}  # Param.kind -> JSON schema type ("any": anything)


@pytest.fixture(scope="module")
def doc() -> dict:
    with API_DOC.open() as f:
        return yaml.safe_load(f)


def resolve(doc: dict, node: dict) -> dict:
    """``node`` with its ``$ref`` (if any) followed, within docs/api.yaml."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"docs/api.yaml: external $ref {ref}"
        node = doc
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def operation(doc: dict, method: str, path: str) -> dict:
    return doc["paths"][path][method.lower()]


def registered() -> set[tuple[str, str]]:
    # build_router only registers closures over the API object: nothing is called
    router = build_router(types.SimpleNamespace())
    return {(m.upper(), p) for m, p in router._routes}


def documented(doc: dict) -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in doc["paths"].items()
            for m in item if m in HTTP_METHODS}


def contract() -> set[tuple[str, str]]:
    return {(e.method, e.path) for e in ENDPOINTS.values()} | {("POST", CNI_PATH)}


def api_methods(cls) -> dict[str, inspect.Signature]:
    """Public methods a class itself defines (or inherits), with their signatures."""
    return {name: inspect.signature(fn) for name, fn in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")}


def params_of(sig: inspect.Signature) -> list[inspect.Parameter]:
    return [p for p in sig.parameters.values() if p.name != "self"]


# --------------------------------------------------------------------------- (a) endpoints
def test_doc_is_openapi_3(doc):
    assert str(doc["openapi"]).startswith("3.0.")
    assert doc["paths"], "docs/api.yaml documents no path"


def test_router_serves_exactly_the_contract():
    assert registered() == contract()


def test_every_endpoint_of_the_contract_is_documented(doc):
    missing = contract() - documented(doc)
    assert not missing, f"endpoints missing from docs/api.yaml: {sorted(missing)}"


def test_every_documented_endpoint_is_in_the_contract(doc):
    extra = documented(doc) - contract()
    assert not extra, f"docs/api.yaml documents endpoints the agent does not serve: {sorted(extra)}"


def test_cni_headers_are_documented(doc):
    op = operation(doc, "POST", CNI_PATH)
    params = [resolve(doc, p) for p in op.get("parameters", [])]
    names = {p["name"].lower() for p in params if p.get("in") == "header"}
    assert set(CNI_HEADERS.values()) <= names, sorted(set(CNI_HEADERS.values()) - names)
    assert "x-cni-exit" in {h.lower() for h in op["responses"]["200"]["headers"]}


# --------------------------------------------------------------------------- (b) parameters
def documented_params(doc: dict, method: str, path: str) -> dict[str, dict]:
    """name -> {"required": bool, "schema": {...}}: query parameters of a GET,
    request-body properties of any other method."""
    op = operation(doc, method, path)
    out: dict[str, dict] = {}
    for p in op.get("parameters", []):
        p = resolve(doc, p)
        if p.get("in") == "query":
            out[p["name"]] = {"required": bool(p.get("required", False)),
                              "schema": resolve(doc, p.get("schema", {}))}
    body = op.get("requestBody")
    if body is not None:
        schema = resolve(doc, resolve(doc, body)["content"]["application/json"]["schema"])
        required = set(schema.get("required", ()))
        for name, s in schema.get("properties", {}).items():
            out[name] = {"required": name in required, "schema": resolve(doc, s)}
    return out


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_documented_parameters_are_the_declared_params(doc, name):
    ep = ENDPOINTS[name]
    got = documented_params(doc, ep.method, ep.path)
    declared = {p.name: p for p in ep.params}
    assert set(got) == set(declared), (f"{ep.method} {ep.path}: documented {sorted(got)}, "
                                       f"declared {sorted(declared)}")
    where = "query" if ep.method == "GET" else "body"
    for pname, p in declared.items():
        d = got[pname]
        assert d["required"] == p.required, f"{ep.path} {where} parameter {pname}: required-ness"
        if p.kind in KINDS:
            assert d["schema"].get("type") == KINDS[p.kind], f"{ep.path} {pname}: type"
        # a bound or a choice the router enforces is one the reader is told about
        if p.lo is not None:
            assert d["schema"].get("minimum") == p.lo, f"{ep.path} {pname}: minimum"
        if p.hi is not None:
            assert d["schema"].get("maximum") == p.hi, f"{ep.path} {pname}: maximum"
        if p.choices:
            assert tuple(d["schema"].get("enum", ())) == p.choices, f"{ep.path} {pname}: enum"


def test_get_endpoints_take_no_body_and_post_endpoints_no_query(doc):
    for ep in ENDPOINTS.values():
        op = operation(doc, ep.method, ep.path)
        if ep.method == "GET":
            assert "requestBody" not in op, ep.path
        else:
            assert not [p for p in map(lambda p: resolve(doc, p), op.get("parameters", []))
                        if p.get("in") == "query"], ep.path


# --------------------------------------------------------------------------- (c) methods
def test_every_nodeapi_method_has_an_endpoint_and_vice_versa():
    methods = set(api_methods(NodeAPI))
    assert methods - {"cni"} == set(ENDPOINTS)
    assert "cni" in methods


@pytest.mark.parametrize("impl", [AgentClient, AgentFacade], ids=lambda c: c.__name__)
def test_implementations_define_exactly_the_nodeapi_methods(impl):
    want = api_methods(NodeAPI)
    got = api_methods(impl)
    assert set(got) == set(want), (f"{impl.__name__}: missing {sorted(set(want) - set(got))}, "
                                   f"extra {sorted(set(got) - set(want))}")
    for name, sig in want.items():
        w = [(p.name, p.kind, p.default) for p in params_of(sig)]
        g = [(p.name, p.kind, p.default) for p in params_of(got[name])]
        assert g == w, f"{impl.__name__}.{name}{got[name]} differs from NodeAPI.{name}{sig}"


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_params_are_the_method_parameters(name):
    """The router calls ``api.<name>(**params)``: the declared Params are the
    method's parameters, a required one has no default, the others the same."""
    ep = ENDPOINTS[name]
    sig = params_of(api_methods(NodeAPI)[name])
    assert [p.name for p in ep.params] == [p.name for p in sig]
    for param, p in zip(ep.params, sig):
        if param.required:
            assert p.default is inspect.Parameter.empty, f"{name}({p.name}) is required"
        else:
            assert p.default == param.default, f"{name}({p.name}): default"


# --------------------------------------------------------------------------- fixed records
# FIXED (one record per endpoint) and CNI_REPLY: tests/unit/api_samples.py


# --------------------------------------------------------------------------- (d) results
def test_every_endpoint_has_a_fixed_record():
    assert set(FIXED) == set(ENDPOINTS)
    for name, r in FIXED.items():
        assert type(r) is ENDPOINTS[name].result, name


def record_keys(name: str) -> set[str]:
    """The record's fields, plus what its JSON adds (TxnRecord's derived ``ok``);
    FIXED records fill every field, so nothing is left out as empty."""
    cls = ENDPOINTS[name].result
    return {f.name for f in dataclasses.fields(cls)} | set(FIXED[name].to_dict())


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_documented_result_names_the_record_fields(doc, name):
    ep = ENDPOINTS[name]
    resp = resolve(doc, operation(doc, ep.method, ep.path)["responses"]["200"])
    schema = resolve(doc, resp["content"]["application/json"]["schema"])
    if "properties" not in schema:
        pytest.skip(f"{ep.path}: the documented 200 body names no properties")
    assert set(schema["properties"]) == record_keys(name), (
        f"{ep.method} {ep.path}: documented {sorted(schema['properties'])}, "
        f"{ep.result.__name__} has {sorted(record_keys(name))}")
    assert set(schema.get("required", ())) <= record_keys(name), ep.path


# --------------------------------------------------------------------------- (e) round trip
class FakeAPI:
    """A NodeAPI answering FIXED records and remembering each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.answers = dict(FIXED)
        self.raise_: Exception | None = None

    def _answer(self, _method: str, **args):
        self.calls.append((_method, args))
        if self.raise_ is not None:
            raise self.raise_
        return self.answers[_method]

    def health(self):
        return self._answer("health")

    def status(self):
        return self._answer("status")

    def ipam(self):
        return self._answer("ipam")

    def ipam_gc(self, valid=None):
        return self._answer("ipam_gc", valid=valid)

    def pods(self):
        return self._answer("pods")

    def nodes(self):
        return self._answer("nodes")

    def state(self, prefix=""):
        return self._answer("state", prefix=prefix)

    def desired(self, prefix=""):
        return self._answer("desired", prefix=prefix)

    def plan(self):
        return self._answer("plan")

    def resync(self):
        return self._answer("resync")

    def history(self, limit=50, since=0):
        return self._answer("history", limit=limit, since=since)

    def services(self, namespace=None, name=None):
        return self._answer("services", namespace=namespace, name=name)

    def policies(self, namespace=None, pod=None):
        return self._answer("policies", namespace=namespace, pod=pod)

    def explain(self, src, dst, port, protocol="TCP"):
        return self._answer("explain", src=src, dst=dst, port=port, protocol=protocol)

    def netstat(self, pod=None):
        return self._answer("netstat", pod=pod)

    def sockets(self, pod):
        return self._answer("sockets", pod=pod)

    def sessions(self, service=None, pod=None):
        return self._answer("sessions", service=service, pod=pod)

    def trace_start(self, protocol, src, sport, dst, dport=0):
        return self._answer("trace_start", protocol=protocol, src=src, sport=sport, dst=dst, dport=dport)

    def trace_probe(self, pod, protocol, sport, dst, dport=0, timeout_ms=1000):
        return self._answer("trace_probe", pod=pod, protocol=protocol, sport=sport, dst=dst, dport=dport,
                            timeout_ms=timeout_ms)

    def trace_collect(self, id):  # noqa: A002
        return self._answer("trace_collect", id=id)

    def dataplane_cli(self, command):
        return self._answer("dataplane_cli", command=command)

    def dataplane_dump(self, what):
        return self._answer("dataplane_dump", what=what)

    def stn_sync(self):
        return self._answer("stn_sync")

    def cni(self, env, body):
        self.calls.append(("cni", {"env": env, "body": body}))
        return CNI_REPLY


def test_fake_is_a_nodeapi():
    """The fake must stand in for the facade: same methods, same parameters."""
    want, got = api_methods(NodeAPI), api_methods(FakeAPI)
    assert set(got) == set(want)
    for name in want:
        assert [p.name for p in params_of(got[name])] == [p.name for p in params_of(want[name])]


@pytest.fixture(scope="module")
def served():
    """(client, fake, requests seen by the router): a real server on a temporary socket."""
    fake = FakeAPI()
    router = build_router(fake)
    seen: list[tuple[str, str]] = []
    route = router.route

    def recording(method: str, path: str):
        seen.append((method, path))
        return route(method, path)
    router.route = recording
    tmp = tempfile.mkdtemp(prefix="apidoc-")  # short: a unix socket path has at most 107 bytes
    server = APIServer(str(Path(tmp) / "agent.sock"), router).start()
    try:
        yield AgentClient(server.path, timeout=10), fake, seen
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def api(served):
    client, fake, seen = served
    fake.calls.clear()
    fake.answers = dict(FIXED)
    fake.raise_ = None
    seen.clear()
    return served


# method, client arguments, what the fake must receive
CALLS = [
    ("health", {}, {}),
    ("status", {}, {}),
    ("ipam", {}, {}),
    ("ipam_gc", {}, {"valid": None}),
    ("ipam_gc", {"valid": [{"containerID": "c1", "ifname": "eth0"}]},
     {"valid": [{"containerID": "c1", "ifname": "eth0"}]}),
    ("pods", {}, {}),
    ("nodes", {}, {}),
    ("state", {}, {"prefix": ""}),
    ("state", {"prefix": "linux/veth/"}, {"prefix": "linux/veth/"}),
    ("desired", {"prefix": "linux/"}, {"prefix": "linux/"}),
    ("plan", {}, {}),
    ("resync", {}, {}),
    ("history", {}, {"limit": 50, "since": 0}),
    ("history", {"limit": 7, "since": 3}, {"limit": 7, "since": 3}),
    ("services", {}, {"namespace": None, "name": None}),
    ("services", {"namespace": "shop", "name": "web"}, {"namespace": "shop", "name": "web"}),
    ("policies", {"namespace": "shop", "pod": "db"}, {"namespace": "shop", "pod": "db"}),
    ("explain", {"src": "tools/client", "dst": "shop/db", "port": 5432},
     {"src": "tools/client", "dst": "shop/db", "port": 5432, "protocol": "TCP"}),
    ("explain", {"src": "10.1.1.2", "dst": "shop/db", "port": 53, "protocol": "udp"},
     {"src": "10.1.1.2", "dst": "shop/db", "port": 53, "protocol": "UDP"}),
    ("netstat", {}, {"pod": None}),
    ("netstat", {"pod": "shop/web-1"}, {"pod": "shop/web-1"}),
    ("sockets", {"pod": "shop/web-1"}, {"pod": "shop/web-1"}),
    ("sessions", {}, {"service": None, "pod": None}),
    ("sessions", {"service": "shop/web", "pod": "tools/client"}, {"service": "shop/web", "pod": "tools/client"}),
    ("dataplane_cli", {"command": "show version"}, {"command": "show version"}),
    ("dataplane_dump", {"what": "vxlan"}, {"what": "vxlan"}),
    ("trace_start", {"protocol": "tcp", "src": "10.1.1.2", "sport": 61000, "dst": "10.96.0.10", "dport": 80},
     {"protocol": "TCP", "src": "10.1.1.2", "sport": 61000, "dst": "10.96.0.10", "dport": 80}),
    ("trace_probe", {"pod": "tools/client", "protocol": "ICMP", "sport": 61000, "dst": "10.1.2.3"},
     {"pod": "tools/client", "protocol": "ICMP", "sport": 61000, "dst": "10.1.2.3", "dport": 0,
      "timeout_ms": 1000}),
    ("trace_collect", {"id": "5f0c1d2e3a4b"}, {"id": "5f0c1d2e3a4b"}),
    ("stn_sync", {}, {}),
]


def test_every_method_is_exercised():
    assert {c[0] for c in CALLS} == set(ENDPOINTS)


@pytest.mark.parametrize("name,args,received", CALLS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CALLS)])
def test_round_trip(api, name, args, received):
    client, fake, seen = api
    got = getattr(client, name)(**args)
    assert got == FIXED[name]
    assert type(got) is type(FIXED[name])
    assert got.to_dict() == FIXED[name].to_dict()
    # the client asked the endpoint of the contract, and the router called that method
    ep = ENDPOINTS[name]
    assert seen == [(ep.method, ep.path)]
    assert fake.calls == [(name, received)]


def test_health_of_an_agent_that_is_not_ready_is_a_record(api):
    client, fake, _ = api
    fake.answers["health"] = rec.Health("node1", False, 51, "node networking is not in place", 3)
    assert client.health() == fake.answers["health"]


def test_cni_round_trip(api):
    client, fake, seen = api
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/p",
           "CNI_IFNAME": "eth0", "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1",
           "CNI_PATH": "/opt/cni/bin"}
    body = b'{"cniVersion":"1.1.0","name":"contiv","type":"contiv-cni"}'
    assert client.cni({**env, "HOME": "/root"}, body) == CNI_REPLY
    assert seen == [("POST", CNI_PATH)]
    assert fake.calls == [("cni", {"env": env, "body": body})]  # only the CNI_* variables travel


@pytest.mark.parametrize("name,args,param", [
    ("history", {"limit": 0}, "limit"),
    ("history", {"limit": 10001}, "limit"),
    ("history", {"since": -1}, "since"),
    ("explain", {"src": "a/b", "dst": "c/d", "port": 70000}, "port"),
    ("explain", {"src": "a/b", "dst": "c/d", "port": 0}, "port"),
    ("explain", {"src": "a/b", "dst": "c/d", "port": 80, "protocol": "ICMP"}, "protocol"),
    ("explain", {"src": "a/b", "dst": "c/d", "port": "80"}, "port"),  # JSON body: no string for an int
    ("explain", {"src": 5, "dst": "c/d", "port": 80}, "src"),
    ("dataplane_dump", {"what": "everything"}, "what"),
    ("dataplane_cli", {"command": ""}, "command"),
    ("sockets", {"pod": ""}, "pod"),
    ("trace_start", {"protocol": "SCTP", "src": "10.1.1.2", "sport": 1, "dst": "10.1.1.3"}, "protocol"),
    ("trace_start", {"protocol": "TCP", "src": "10.1.1.2", "sport": 0, "dst": "10.1.1.3"}, "sport"),
    ("trace_probe", {"pod": "a/b", "protocol": "TCP", "sport": 1, "dst": "10.1.1.3", "timeout_ms": 5},
     "timeout_ms"),
    ("trace_collect", {"id": ""}, "id"),
])
def test_bad_parameter_is_invalid_input_naming_it(api, name, args, param):
    client, fake, _ = api
    with pytest.raises(errors.InvalidInput) as e:
        getattr(client, name)(**args)
    assert param in e.value.message, e.value.message
    assert fake.calls == []  # refused at the boundary


def _error_classes() -> list[type]:
    """The agent's typed errors (agent/errors.py): what can cross the API.
    (Subclasses elsewhere -- the lab's, VPP's -- travel as their base class's
    name only if they keep it; the agent's own are checked here.)"""
    return sorted((c for c in vars(errors).values()
                   if isinstance(c, type) and issubclass(c, errors.ContivError)),
                  key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_the_agents_error_comes_back_as_its_class(api, cls):
    client, fake, _ = api
    fake.raise_ = cls("it broke", hint="try again")
    with pytest.raises(errors.ContivError) as e:
        client.ipam()
    assert type(e.value) is cls
    assert (e.value.message, e.value.hint) == ("it broke", "try again")
