"""Kernel settings through /proc/sys (for the agent's own network namespace).

Sysctls always exist, so "ownership" means "desired": retrieve reports only
the settings we want, with their current value, and deletion leaves the value
as it is (we cannot know what it should go back to).
"""
from __future__ import annotations

import re
from pathlib import Path

from agent.errors import DataplaneError, InvalidInput
from agent.linux.values import Sysctl
from agent.reconciler import Descriptor, Retrieved

_NAME = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_\-]+)+$")


def _path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


class SysctlDescriptor(Descriptor):
    name = "linux-sysctl"
    key_prefix = "linux/sysctl/"
    supports_update = True

    def validate(self, key, v: Sysctl) -> None:
        if not _NAME.fullmatch(v.name) or ".." in v.name:
            raise InvalidInput(f"sysctl name {v.name!r} is invalid")

    def create(self, key, v: Sysctl, ctx):
        try:
            _path(v.name).write_text(v.value + "\n")
        except OSError as e:
            raise DataplaneError(f"sysctl {v.name}={v.value}: {e.strerror}", op="sysctl",
                                 args={"name": v.name}) from None

    def update(self, key, old, new, metadata, ctx):
        return self.create(key, new, ctx)

    def delete(self, key, v, metadata, ctx) -> None:
        return None

    def retrieve(self, correlate, ctx):
        out = []
        for key, v in correlate.items():
            try:
                out.append(Retrieved(key, Sysctl(v.name, _path(v.name).read_text().strip())))
            except OSError:
                continue
        return out
