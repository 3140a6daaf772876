"""The VPP tier: tests against a real VPP started through agent.vpp.process."""
