"""The end of a multi-process run.

Every command that succeeded releases the process group it may have set up under torchrun, DeepSpeed or SLURM
(`dcclip.command_errors.run_command` calls this for each entry script and `dcclip <command>`). Left to interpreter
shutdown, gloo's worker threads (the backend on CPU) can abort the process after a finished run, "terminate called
without an active exception", exit status -6: about 1 run in 10 of a two-process job here.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)


def release_process_group() -> None:
    """Destroy the default process group, if one was set up."""
    distributed = sys.modules.get("torch.distributed")  # never imported here just to learn there is nothing to do
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        rank, world_size = distributed.get_rank(), distributed.get_world_size()
        distributed.destroy_process_group()
        logger.info("rank %d of %d released its process group", rank, world_size)
