"""Desired-state builders: pure functions from cluster state to data-plane-neutral
intents. No I/O, no data-plane types; unit-tested without root.

Each data plane renders the intents into its own values
(:mod:`agent.linux.render` for Linux).
"""
