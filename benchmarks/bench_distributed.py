"""Per-rank memory, generated elements and time of ``plan.apply`` on a Llama-style model
sharded with FSDP2 over 1, 2 or 4 CPU processes (gloo).

The model is built on the meta device, planned there ("torchtitan"), sharded block by block
with ``fully_shard``, materialized with ``to_empty`` and then applied. Every configuration
runs in fresh processes, so each rank's peak resident memory (``ru_maxrss``) during apply is
its own (the shards are touched first: to_empty does not make them resident). Reported per
rank: the local parameters (MiB), the peak's growth during apply (MiB),
the elements the generator produced on that rank, and the time (meaningful for 1 and 2
processes only: four processes on two cores wait on each other).

    python benchmarks/bench_distributed.py                      # ~1B parameters, 1/2/4 ranks
    python benchmarks/bench_distributed.py --layers 2 --world 2  # a quick look
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
# torchtitan's Llama by its parameter names, and the tests' gloo group of one-thread processes
from test_distributed import _close, _group, _spawn, llama


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, mode: str, out) -> None:
    from torch.distributed.fsdp import fully_shard

    import weightinit as wi

    mesh = _group(rank, world, port)
    with torch.device("meta"):
        model = llama(args.layers, args.d, args.hidden, args.vocab)
    rng, atomic = mode.split("/")
    rng, _, compiled = rng.partition("+")  # "philox-v1+compiled": its kernels built first
    plan = wi.plan(model, "torchtitan", seed=0, rng=rng)
    for block in model.layers:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    model.to_empty(device="cpu")
    with torch.no_grad():  # to_empty allocates without touching: make the shards resident
        for p in model.parameters():
            p.to_local().zero_()
    local = sum(p.to_local().numel() for p in model.parameters())
    building = 0.0
    if compiled:
        from weightinit.initializers.counter import compiled_available

        start = time.perf_counter()
        assert compiled_available(torch.float32), "torch.compile does not work here"
        building = time.perf_counter() - start
    dist.barrier()
    before = _peak_mib()
    start = time.perf_counter()
    plan.apply(model, atomic=atomic == "atomic")
    seconds = time.perf_counter() - start
    grown = _peak_mib() - before
    full = sum(p.numel() for p in model.parameters())
    generated = local if rng == "philox-v1" else full  # torch's generator draws whole tensors
    row = (rank, local * 4 / 2**20, grown, generated, seconds, building)
    rows = [None] * world
    dist.all_gather_object(rows, row)
    if rank == 0:
        out.put(rows)
    _close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=5632)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--world", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--modes",
        nargs="+",
        default=[
            "torch/atomic",
            "torch/in-place",
            "philox-v1/atomic",
            "philox-v1/in-place",
            "philox-v1+compiled/in-place",
        ],
        help="rng/mode; philox-v1+compiled builds the compiled kernels first (compiled_available)",
    )
    args = parser.parse_args()
    with torch.device("meta"):
        total = sum(
            p.numel() for p in llama(args.layers, args.d, args.hidden, args.vocab).parameters()
        )
    print(f"torch {torch.__version__}, one thread per process, {total / 1e9:.3f} B parameters "
          f"({total * 4 / 2**30:.2f} GiB float32)")  # fmt: skip
    print("| world | rng / mode | rank | local MiB | peak growth MiB | elements generated | s | "
          "building the compiled kernels, s |")  # fmt: skip
    print("|--:|---|--:|--:|--:|--:|--:|--:|")
    context = mp.get_context("spawn")
    for world in args.world:
        for mode in args.modes:
            out = context.SimpleQueue()
            _spawn(_worker, world, args, mode, out)
            for rank, local, grown, generated, seconds, building in out.get():
                shown = f"{seconds:.1f}" if world <= 2 else "-"
                built = f"{building:.1f}" if building else "-"
                print(f"| {world} | {mode} | {rank} | {local:.0f} | {grown:.0f} | "
                      f"{generated / 1e6:.0f} M | {shown} | {built} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
