"""Which ranks share a node: found once, at construction, and kept with the communicator.

Ranks on one node share memory (tens of GB/s through MPI's shared-memory transport) and one
network link to the other nodes. The compressed collectives therefore never compress
between ranks of one node, and a job whose ranks all share one node runs plain MPI (unless
compression is forced with ``adapt=False``).

The node of a rank is what ``MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`` says: the ranks MPI
can reach through shared memory (on the netbed with ``MPIR_CVAR_NOLOCAL=1`` that is every rank
alone; with MPICH's clique emulation, ``MPIR_CVAR_NUM_CLIQUES``, the emulated node). Where
that split is unavailable (an MPI without it, or an error), ranks with the same processor
name share a node.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from mpi4py import MPI


@dataclass(frozen=True)
class Topology:
    """Nodes (numbered by their lowest rank) and the ranks on each, in rank order."""

    node_of: tuple[int, ...]  # node index of every rank
    source: str  # how the nodes were found: "shared memory" or "processor name"

    @cached_property
    def members(self) -> tuple[tuple[int, ...], ...]:
        nodes: dict[int, list[int]] = {}
        for rank, node in enumerate(self.node_of):
            nodes.setdefault(node, []).append(rank)
        return tuple(tuple(nodes[n]) for n in sorted(nodes))

    @property
    def size(self) -> int:
        return len(self.node_of)

    @property
    def nodes(self) -> int:
        return len(self.members)

    def local_rank(self, rank: int) -> int:
        return self.members[self.node_of[rank]].index(rank)

    @property
    def ranks_per_node(self) -> int:
        """The most ranks on one node."""
        return max(len(m) for m in self.members)

    @property
    def regular(self) -> bool:
        """Every node holds the same number of ranks."""
        return len({len(m) for m in self.members}) == 1

    @property
    def single_node(self) -> bool:
        return self.nodes == 1

    @property
    def hierarchical(self) -> bool:
        """Some node holds several ranks and there are several nodes: the two-level algorithms."""
        return 1 < self.nodes < self.size

    @property
    def shares(self) -> int:
        """How many ranks of each node carry a share of the traffic between nodes: all of them
        where every node holds as many, else one (the lowest) per node."""
        return self.ranks_per_node if self.regular else 1

    def rank_at(self, node: int, local: int) -> int:
        return self.members[node][local]

    def peers(self, local: int) -> list[int]:
        """The ranks with local index `local`, one per node, in node order (those that exist)."""
        return [m[local] for m in self.members if local < len(m)]

    def describe(self) -> str:
        sizes = sorted({len(m) for m in self.members})
        per = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        return f"{self.size} ranks on {self.nodes} node(s), {per} per node ({self.source})"


def discover(comm: MPI.Intracomm) -> Topology:
    """The node structure of comm (collective)."""
    lowest, source = -1, "shared memory"
    try:
        node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    except (MPI.Exception, NotImplementedError, AttributeError):
        node = MPI.COMM_NULL
    if node != MPI.COMM_NULL:
        lowest = MPI.Group.Translate_ranks(node.Get_group(), [0], comm.Get_group())[0]
        node.Free()
    failed = comm.allreduce(int(lowest < 0), MPI.MAX)
    if failed:
        source = "processor name"
        names = comm.allgather(MPI.Get_processor_name())
        lowest = names.index(names[comm.Get_rank()])
    labels = comm.allgather(lowest)
    order = sorted(set(labels))
    return Topology(tuple(order.index(label) for label in labels), source)
