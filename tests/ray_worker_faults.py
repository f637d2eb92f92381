"""Faults for tests/test_ray_ingest.py, put into Ray's worker processes (never into the command itself).

Given to Ray as ``runtime_env={"worker_process_setup_hook": "tests.ray_worker_faults.setup", "env_vars": {...}}``,
``setup`` runs in every worker process at start-up and installs what the environment variables ask for:

- ``STCG_TEST_CRASH_EXAMPLE=<example id>``: ``ingest.steps.explain_batch`` (which the model actors import
  at each call) kills its own process with SIGKILL when its batch holds that example, as the OOM killer or
  a native crash would: no Python exception, nothing for ``explain_batch`` to catch. Each death first
  appends a line (pid, the batch's example ids) to ``STCG_TEST_CRASH_LOG``, so the test counts the tries.
- ``STCG_TEST_READONLY_STORE=1``: the file store is read-only for the workers (``FileStore.write_shard``
  fails with EROFS), as on a cluster whose ``--store`` is not shared with the driver's machine.
"""

from __future__ import annotations

import errno
import os
import signal

CRASH_EXAMPLE = "STCG_TEST_CRASH_EXAMPLE"
CRASH_LOG = "STCG_TEST_CRASH_LOG"
READONLY_STORE = "STCG_TEST_READONLY_STORE"


def setup() -> None:
    victim = os.environ.get(CRASH_EXAMPLE)
    if victim:
        import ingest.steps as steps

        real = steps.explain_batch

        def explain_batch(engine, batch, inputs, host):
            ids = [ex.example_id for ex in batch]
            if victim in ids:
                with open(os.environ[CRASH_LOG], "a") as f:
                    f.write(f"{os.getpid()} {','.join(ids)}\n")
                os.kill(os.getpid(), signal.SIGKILL)
            return real(engine, batch, inputs, host)

        steps.explain_batch = explain_batch
    if os.environ.get(READONLY_STORE):
        from stcg.filestore import FileStore

        def write_shard(self, records):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self.shards))

        FileStore.write_shard = write_shard
