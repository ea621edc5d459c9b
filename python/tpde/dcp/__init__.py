"""torch.distributed.checkpoint storage for tpde: sharded saves as per-shard temporal deltas.

    import torch.distributed.checkpoint as dcp, tpde.dcp
    dcp.save(state, storage_writer=tpde.dcp.Writer("s3://bucket/run", step=step))
    dcp.load(state, storage_reader=tpde.dcp.Reader("s3://bucket/run", step=step))

See docs/distributed.md.
"""

from .layout import ShardLocation
from .reader import Reader
from .steps import prune, steps, verify
from .writer import Writer

__all__ = ["Reader", "ShardLocation", "Writer", "prune", "steps", "verify"]
