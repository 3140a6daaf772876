"""The agent's local API: HTTP/1.1 + JSON on a root-only unix socket.

:mod:`agent.api.server` serves it (routes in :mod:`agent.api.routes`),
:mod:`agent.api.client` is the Python client ``contivctl`` uses. The
contract is docs/api.yaml (OpenAPI 3).
"""
