"""Throughput of the counter-based generator's normal draws against torch.Tensor.normal_.

Three sides draw N(0, 1) float32 values for the same number of elements in the same process:
``weightinit.initializers.counter.normal`` on its eager path and on its compiled path
(torch.compile; compiled once before timing), and ``torch.empty(n).normal_()`` (torch's
mt19937 + Box-Muller CPU kernel) twice: into a preallocated tensor (the ratios' reference, the
harder peer) and into a fresh ``torch.empty(n)``, which allocates as ``normal`` does. The calls are
interleaved, in a rotating order per repeat, so drift in machine speed hits all sides alike;
each side gets one warm-up call, then the median of ``--repeats`` timed calls
(``time.perf_counter``) is reported, for each thread count in ``--threads``.

    python benchmarks/bench_generator.py                  # 2^24 elements, 1 and 2 threads
    python benchmarks/bench_generator.py --log2n 20 --repeats 3   # smoke run

ratio = elements/s of the side / elements/s of torch's normal_ (higher is faster; the issue's
target for the compiled path is >= 0.8). The script prints a markdown table and exits 0.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from weightinit.initializers.counter import compiled_available, normal, philox_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log2n", type=int, default=24, help="elements per draw: 2**log2n")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    n = 1 << args.log2n
    key = philox_key(0, "bench.weight")
    target = torch.empty(n)
    sides = {
        "torch normal_": lambda: target.normal_(),
        "torch empty + normal_": lambda: torch.empty(n).normal_(),
        "counter, eager": lambda: normal(key, range(n), impl="eager"),
    }
    t0 = time.perf_counter()
    if compiled_available(torch.float32):
        sides["counter, compiled"] = lambda: normal(key, range(n), impl="compiled")
        print(f"compiled path probed and compiled in {time.perf_counter() - t0:.1f} s")
    else:
        print("compiled path unavailable here (no working C compiler): eager only")
    machine = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {machine}, n = 2^{args.log2n}")
    print()
    print("| threads | side | Melements/s | ratio to torch normal_ |")
    print("|--:|---|--:|--:|")
    names = list(sides)
    for threads in args.threads:
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {name: [] for name in names}
        for name in names:
            sides[name]()  # warm-up
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                start = time.perf_counter()
                sides[name]()
                times[name].append(time.perf_counter() - start)
        rate = {name: n / statistics.median(times[name]) for name in names}
        for name in names:
            ratio = rate[name] / rate["torch normal_"]
            print(f"| {threads} | {name} | {rate[name] / 1e6:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
