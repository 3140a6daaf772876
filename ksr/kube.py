"""The Kubernetes side of the reflector: the official ``kubernetes`` client
(imported here only, and only when a reflector runs), used for its
configuration (kubeconfig or in-cluster service account), authentication and
HTTP -- with raw JSON in and out (see :mod:`ksr.objects`)."""
from __future__ import annotations

from typing import Iterator

import orjson

from ksr.objects import KINDS, Kind
from ksr.reflector import PAGE, ApiError, Gone, forbidden_message, iter_lines


class KubeClient:
    """The API server of ``kubeconfig`` (a path), or of the pod's service
    account when None."""

    def __init__(self, kubeconfig: str | None = None, *, request_timeout: float = 30.0) -> None:
        from kubernetes import client, config  # noqa: PLC0415 -- only when a reflector runs
        from kubernetes.config.config_exception import ConfigException  # noqa: PLC0415
        from agent.errors import InvalidInput  # noqa: PLC0415
        cfg = client.Configuration()
        try:
            if kubeconfig:
                config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
            else:
                config.load_incluster_config(client_configuration=cfg)
        except (ConfigException, OSError) as e:
            where = kubeconfig or "the pod's service account (in-cluster)"
            raise InvalidInput(f"cannot configure the Kubernetes client from {where}: {e}",
                               hint="give --kubeconfig PATH outside a cluster") from None
        self.host = cfg.host
        self._client = client
        self.api_client = client.ApiClient(cfg)
        self.timeout = request_timeout
        self._apis: dict[str, object] = {}

    def _method(self, k: Kind):
        api = self._apis.get(k.api_class)
        if api is None:
            api = self._apis[k.api_class] = getattr(self._client, k.api_class)(self.api_client)
        return getattr(api, k.list_method)

    def _call(self, k: Kind, verb: str, **kw):
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415
        from urllib3.exceptions import HTTPError  # noqa: PLC0415
        try:
            return self._method(k)(_preload_content=False, **kw)
        except ApiException as e:
            msg = _message(e.body) or e.reason or str(e)
            if e.status == 410:
                raise Gone() from None
            if e.status == 403:
                raise ApiError(forbidden_message(k, verb, msg), 403) from None
            raise ApiError(f"{verb} {k.resource}: {e.status} {msg}", e.status or 0) from None
        except (HTTPError, OSError) as e:
            raise ApiError(f"the API server at {self.host} is unreachable ({type(e).__name__}: {e})") from None

    def list_all(self, k: Kind) -> tuple[list[dict], str]:
        """Every object of ``k`` (in pages) and the list's resourceVersion."""
        items: list[dict] = []
        cont = None
        while True:
            kw = {"limit": PAGE, "_request_timeout": self.timeout}
            if cont:
                kw["_continue"] = cont
            resp = self._call(k, "list", **kw)
            doc = orjson.loads(resp.data)
            items += doc.get("items") or []
            md = doc.get("metadata") or {}
            cont = md.get("continue")
            if not cont:
                return items, md.get("resourceVersion", "")

    def watch(self, k: Kind, rv: str, timeout: int):
        return self._call(k, "watch", watch=True, resource_version=rv, allow_watch_bookmarks=True,
                          timeout_seconds=timeout, _request_timeout=(10, timeout + 30))

    def events(self, resp) -> Iterator[dict]:
        """The events of a watch response; ApiError(status 0) when the stream breaks."""
        from urllib3.exceptions import HTTPError  # noqa: PLC0415
        try:
            for line in iter_lines(resp.stream(1 << 16, decode_content=True)):
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise ApiError(f"a watch event is not JSON ({e})") from None
        except (HTTPError, OSError, ValueError, AttributeError) as e:
            # AttributeError: http.client's response once closed from another thread (stop)
            raise ApiError(f"watch stream: {type(e).__name__}: {e}") from None

    @staticmethod
    def close(resp) -> None:
        try:
            resp.release_conn()
        except Exception:  # noqa: BLE001 -- a broken connection is dropped either way
            pass

    def check(self, kinds=KINDS) -> list[str]:
        """What RBAC forbids (a line each): one list of one object per kind."""
        out = []
        for k in kinds:
            try:
                self._call(k, "list", limit=1, _request_timeout=self.timeout)
            except ApiError as e:
                if e.status == 403:
                    out.append(str(e))
                else:
                    raise
            except Gone:
                pass
        return out


def _message(body) -> str:
    try:
        return str(orjson.loads(body).get("message", ""))
    except (orjson.JSONDecodeError, TypeError, AttributeError):
        return ""
