"""CPU time of processes on this machine, from /proc: a benchmark's own, its programs' and
PostgreSQL's (the server's share of a workload, which wall times on two cores hide)."""

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (utime and stime, in clock ticks)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def postgres_cpu_seconds() -> float | None:
    """CPU time so far of every PostgreSQL process on this machine (None: none is visible, a
    server elsewhere). Processes that end meanwhile take their time with them: compare it
    over stretches where the server's connections stay open."""
    total, found = 0.0, False
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            total += cpu_seconds(int(proc.name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended while we looked
        found = True
    return total if found else None
