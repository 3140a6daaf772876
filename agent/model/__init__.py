"""The agent's data model: frozen dataclasses and the etcd key grammar. No I/O."""
