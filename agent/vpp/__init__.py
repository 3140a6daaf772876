"""The VPP data plane.

This is the ONLY package of the project that imports ``vpp_papi``, and only
``papi.py`` does, lazily, so ``import agent.vpp`` stays cheap. Modules:

* ``errors``    typed errors (VppApiError, VppUnavailable, VppVersionMismatch,
  VppMessageInvalid);
* ``apidefs``   the VPP API definitions (``*.api.json``): load, index,
  ``validate``, ``fill``; ``validate`` holds the checks themselves;
* ``papi``      ``VppApi``, the one chokepoint to a real VPP, and the
  ``VppChannel`` interface that descriptors program against;
* ``recorder``  ``Recorder``, the unit tier's recording fake of ``VppApi``
  (it is not a VPP: it checks message shapes, not behaviour);
* ``process``   run a private VPP (tests, the lab) and tell whether one is
  available.
"""
