"""contivctl's node agent and the shared API layer.

Layers, each importing only the ones listed after it (enforced by
import-linter: the contracts are in setup.cfg and run in scripts/test.sh):

* ``daemon``     -- the agent process: watch, build, reconcile, serve
* ``facade``     -- the agent's side of the local API (one object, NodeAPI)
* ``api``        -- the local API: the contract (``NodeAPI``, the endpoint
                    table), the router and server, and the typed client that
                    every caller uses
* ``cnihandler`` -- CNI requests forwarded by the ``contiv-cni`` executable
* ``podnet``, ``services``, ``policies`` -- pods, Services and NetworkPolicies
                    kept current in the desired state, data-plane neutral
* ``linux``, ``vpp`` -- the data planes (``dataplane.Dataplane``); the only
                    modules that import pyroute2, run nft or import vpp_papi
* ``policyindex``, ``desired`` -- label indexes; the partitioned desired state
* ``dataplane``, ``builders``, ``cluster`` -- the data-plane seam (protocol,
                    registry); pure intent builders; the cluster snapshot
* ``reconciler`` -- the generic desired-state scheduler (descriptor protocol)
* ``ipam``       -- node subnets and pod addresses, compare-and-swap in etcd
* ``store``      -- etcd and an in-memory store with the same protocol;
  ``httpserve``  -- a small HTTP endpoint (metrics, the reflector's health)
* ``config``     -- the agent's configuration
* ``model``      -- records and the key grammar; no I/O
* ``errors``     -- typed errors

Outside the agent: ``contivctl`` (the CLI) and ``lab`` reach agents only
through ``api``; ``cni`` imports nothing of the project; ``ksr`` (the
Kubernetes state reflector) writes etcd through ``store`` in ``model``'s
layout.
"""
