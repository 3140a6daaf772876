"""contivctl's node agent and the shared API layer.

Sub-packages, each a layer that may only import the ones listed after it:

* ``api``        -- the agent's local HTTP/JSON API (server and client)
* ``daemon``     -- the agent process: watch, build, reconcile, serve
* ``cnihandler`` -- CNI requests forwarded by the ``contiv-cni`` executable
* ``linux``      -- Linux data-plane descriptors (the only pyroute2/nft users)
* ``builders``   -- pure desired-state builders: cluster snapshot -> values
* ``reconciler`` -- the generic desired-state scheduler (descriptor protocol)
* ``ipam``       -- node subnets and pod addresses, compare-and-swap in etcd
* ``store``      -- etcd and an in-memory store with the same protocol
* ``model``      -- frozen dataclasses and the key grammar; no I/O
"""
