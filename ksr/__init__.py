"""The Kubernetes state reflector (``contivctl ksr run``): lists and watches
the Kubernetes API and mirrors the objects agents need into etcd, in the
layout of docs/etcd-layout.md. One replica writes at a time (an etcd lease,
:mod:`ksr.leader`); each kind is level-triggered (:mod:`ksr.reflector`):
whatever was missed, a relist makes etcd equal the API again."""
