"""Run a command (a Ray node) for as long as the process that started us lives.

``python -m losslab.parallel._watchdog CMD ...`` starts CMD in a session of its own,
prints ``session <sid>`` on stdout, then waits for its stdin to close. The parent holds
the other end of that pipe, so the pipe closes when the parent exits for any reason,
``kill -9`` included. The watchdog then ends every process of CMD's session (Ray's
node processes and the workers they forked, which keep the session but not the process
group) and exits. It runs in a session of its own, so a signal to the parent's terminal
or process group does not reach it before it has cleaned up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

GRACE_SECONDS = 1.0  # SIGTERM first (Ray flushes its logs), then SIGKILL: a graceful Ray stop can take 30 s


def session_members(sid: int) -> list[int]:
    """Pids of the live processes whose session id is ``sid`` (Linux ``/proc``)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry))
    return members


def end_session(sid: int, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM every process of session ``sid``, then SIGKILL what is left after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for pid in session_members(sid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while session_members(sid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not session_members(sid):
            return


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m losslab.parallel._watchdog CMD [ARGS...]", file=sys.stderr)
        return 2
    # stdout is our pipe to the parent, which reads one line and closes it: the node must not write there
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    sid = child.pid  # a new session's id is its leader's pid
    print(f"session {sid}", flush=True)
    sys.stdout.close()
    try:
        sys.stdin.buffer.read()  # returns at EOF: the parent closed the pipe or died
    except (OSError, KeyboardInterrupt):
        pass
    end_session(sid)
    child.poll()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the parent's terminal: the parent decides
    sys.exit(main(sys.argv[1:]))
