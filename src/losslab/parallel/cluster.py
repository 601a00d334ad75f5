"""Ray nodes on this machine that cannot outlive the process that started them.

``--ray local`` used to call ``ray.init()``, which starts a head node as children of the
command; a command killed with ``kill -9`` left the node's agents running. Here a node
is ``ray start --block`` under a watchdog (`losslab.parallel._watchdog`): the watchdog
ends the node's whole session when our end of its stdin pipe closes, which the kernel
does when this process exits in any way. The same nodes make the multi-process test
cluster (a head and a second node joined to it).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from losslab.errors import UserError

__all__ = ["Node", "free_port", "start_node"]

START_TIMEOUT = 60.0  # seconds for a node to accept connections (about 4 s here)


def free_port() -> int:
    """A TCP port no one listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_command() -> list[str]:
    """``ray start`` run by this interpreter, so the node's Ray and Python are the driver's."""
    if importlib.util.find_spec("ray") is None:
        raise UserError("--ray needs the ray package: pip install 'losslab[ray]'.")
    return [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats"]


@dataclass
class Node:
    """A running Ray node: the head's ``address`` (``host:port``) and the watchdog that owns it."""

    address: str
    session: int  # the node's session id: every process of the node carries it
    watchdog: subprocess.Popen[bytes] = field(repr=False)

    def stop(self) -> None:
        """End the node (all its processes) and wait for the watchdog to finish."""
        if self.watchdog.stdin is not None and not self.watchdog.stdin.closed:
            self.watchdog.stdin.close()
        try:
            self.watchdog.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.watchdog.kill()
            self.watchdog.wait()

    @property
    def pids(self) -> list[int]:
        """The node's live processes."""
        from losslab.parallel._watchdog import session_members

        return session_members(self.session)


def start_node(num_cpus: int, *, head: str | None = None) -> Node:
    """Start a Ray node with ``num_cpus`` CPUs: a new head, or a node joining ``head``'s cluster.

    Every port is chosen free beforehand, so several clusters can share one machine.
    Returns once the head accepts connections (a joining node registers a moment later:
    wait for its CPUs with ``ray.cluster_resources()``).
    """
    ports = {
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    args = [*_ray_command(), f"--num-cpus={num_cpus}"]
    args += [f"{name}={port}" for name, port in ports.items()]
    if head is None:
        port = free_port()
        args += ["--head", f"--port={port}", "--include-dashboard=false"]
        address = f"127.0.0.1:{port}"
    else:
        args += [f"--address={head}"]
        address = head
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "losslab.parallel._watchdog", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    assert watchdog.stdout is not None
    line = watchdog.stdout.readline().decode().split()
    watchdog.stdout.close()  # the watchdog closed its end after this one line
    if len(line) != 2 or line[0] != "session":
        watchdog.kill()
        raise RuntimeError("the Ray node's watchdog did not start")
    node = Node(address, int(line[1]), watchdog)
    host, port_text = address.rsplit(":", 1)
    deadline = time.monotonic() + START_TIMEOUT
    while head is None:
        try:
            with socket.create_connection((host, int(port_text)), timeout=1):
                break
        except OSError:
            if not node.pids or time.monotonic() > deadline:
                node.stop()
                raise UserError(
                    "A local Ray node did not start (see /tmp/ray/session_latest/logs): "
                    "check that 'ray start --head' works here."
                ) from None
            time.sleep(0.1)
    return node
