"""The ``contiv-cni`` executable (standard library only). See :mod:`cni.plugin`."""
