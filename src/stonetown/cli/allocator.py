"""`stonetown serve --allocator`: where the interpreter's small objects come from.

CPython's own allocator (pymalloc) takes memory in 1 MiB arenas and gives an arena back only
once every object in it is freed. A burst of work (schema compiles, imports, lookups over a
large group) spreads its objects over many arenas, and the few long-lived objects allocated
meanwhile (new relationships, caches, connections' state) keep most of them: after the
hostile mix the server held ~30 MB more than at its start, most of it arenas a few KB of
live objects pin. glibc's malloc gives back any free page (the server trims every few
seconds), so the same ten-minute mix ends ~12 MB above its start; but each small object carries
malloc's header: ~25 % more memory per relationship in the loaded index (benchmarks/README.md,
"h7-memory"). Hence a choice, made before the interpreter starts (``PYTHONMALLOC``): the
server re-executes itself, same process id, with the variable set.
"""

from __future__ import annotations

import os
import sys

PYMALLOC = "pymalloc"
MALLOC = "malloc"
ALLOCATORS = (PYMALLOC, MALLOC)


def running_allocator() -> str:
    """The allocator this interpreter was started with (``PYTHONMALLOC``; pymalloc when unset)."""
    chosen = os.environ.get("PYTHONMALLOC", "") or PYMALLOC
    return MALLOC if chosen.startswith(MALLOC) else PYMALLOC


def use_allocator(wanted: str | None, own_process: bool) -> str | None:
    """Make the process run on `wanted` (one of :data:`ALLOCATORS`; None: as started): return
    None when it already does, else re-execute the process (the same command line and
    process id; this call does not return) with ``PYTHONMALLOC`` set. An error message
    when it cannot: `own_process` False (the CLI called from another program, whose process
    is not this command's to replace) or the exec failed."""
    if wanted is None or wanted == running_allocator():
        return None
    if not own_process:
        return f"--allocator {wanted} needs a process of its own (start `stonetown serve` as a command)"
    env = dict(os.environ)
    if wanted == MALLOC:
        env["PYTHONMALLOC"] = MALLOC
    else:
        env.pop("PYTHONMALLOC", None)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError as exc:
        return f"--allocator {wanted}: could not re-execute {sys.executable}: {exc}"
    return None  # not reached: execve replaced the process
