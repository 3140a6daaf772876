"""Steal the NIC: hand a single NIC to the data plane and give it back (planned; see docs/)."""
