"""``contivctl lab``: a multi-node cluster in network namespaces (real agents, etcd, packets)."""
