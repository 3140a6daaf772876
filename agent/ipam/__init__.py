"""IP address management, persisted in etcd with compare-and-swap.

* :mod:`agent.ipam.subnets` -- the cluster pod CIDR cut into per-node subnets,
  each claimed by exactly one node at registration.
* :mod:`agent.ipam.pods` -- pod addresses inside the node's subnet, keyed by
  container ID + interface name, claimed cluster-wide so that no address is
  ever handed out twice, even by racing agents.
"""
