"""Time weightinit's tensor initializers against their torch.nn.init counterparts.

Both sides run in the same process, on the same tensor shape, with their own seeded
``torch.Generator``; the calls alternate (weightinit first on even repeats, torch first on odd
ones) so that drift in machine speed hits both sides alike. Each case gets one warm-up call per
side, then the median of ``--repeats`` timed calls (``time.perf_counter``). The thread count is
torch's default.

    python benchmarks/bench_tensor.py            # full run: 16M-element fills, 1024/2048 QR
    python benchmarks/bench_tensor.py --quick    # smoke run: 1M elements, small QR, 3 repeats

ratio = torch_time / weightinit_time, so higher means weightinit is faster. The script prints a
markdown table with a PASS/FAIL column against each case's target and always exits 0.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

import weightinit as wi

SEED = 0
FILL_TARGET = (0.95, ">= 0.95x")
TRUNC_TARGET = (5.0, ">= 5x")
ORTHO_TARGET = (1.0, ">= 1.0x (no slower)")


@dataclass
class Case:
    name: str
    shape: tuple[int, ...]
    ours: Callable[[torch.Tensor, torch.Generator], object]
    theirs: Callable[[torch.Tensor, torch.Generator], object]
    target: tuple[float, str]
    repeats: int | None = None  # None: use --repeats


def cases(fill_shape: tuple[int, ...], ortho_shapes: list[tuple[int, ...]], ortho_big_repeats: int):
    init = torch.nn.init
    n = "x".join(map(str, fill_shape))
    fills = [
        Case(
            f"zeros_ ({n})",
            fill_shape,
            lambda t, g: wi.zeros_(t),
            lambda t, g: init.zeros_(t),
            FILL_TARGET,
        ),
        Case(
            f"ones_ ({n})",
            fill_shape,
            lambda t, g: wi.ones_(t),
            lambda t, g: init.ones_(t),
            FILL_TARGET,
        ),
        Case(
            f"constant_ 0.1 ({n})",
            fill_shape,
            lambda t, g: wi.constant_(t, 0.1),
            lambda t, g: init.constant_(t, 0.1),
            FILL_TARGET,
        ),
        Case(
            f"uniform_ -1,1 ({n})",
            fill_shape,
            lambda t, g: wi.uniform_(t, -1.0, 1.0, generator=g),
            lambda t, g: init.uniform_(t, -1.0, 1.0, generator=g),
            FILL_TARGET,
        ),
        Case(
            f"normal_ 0,1 ({n})",
            fill_shape,
            lambda t, g: wi.normal_(t, 0.0, 1.0, generator=g),
            lambda t, g: init.normal_(t, 0.0, 1.0, generator=g),
            FILL_TARGET,
        ),
        Case(
            f"glorot_uniform_ / xavier_uniform_ ({n})",
            fill_shape,
            lambda t, g: wi.glorot_uniform_(t, generator=g),
            lambda t, g: init.xavier_uniform_(t, generator=g),
            FILL_TARGET,
        ),
        Case(
            f"glorot_normal_ / xavier_normal_ ({n})",
            fill_shape,
            lambda t, g: wi.glorot_normal_(t, generator=g),
            lambda t, g: init.xavier_normal_(t, generator=g),
            FILL_TARGET,
        ),
        Case(
            f"he_normal_ / kaiming_normal_ relu ({n})",
            fill_shape,
            lambda t, g: wi.he_normal_(t, nonlinearity="relu", generator=g),
            lambda t, g: init.kaiming_normal_(t, nonlinearity="relu", generator=g),
            FILL_TARGET,
        ),
        Case(
            f"he_uniform_ / kaiming_uniform_ relu ({n})",
            fill_shape,
            lambda t, g: wi.he_uniform_(t, nonlinearity="relu", generator=g),
            lambda t, g: init.kaiming_uniform_(t, nonlinearity="relu", generator=g),
            FILL_TARGET,
        ),
        # mean 0, std 1: weightinit's bounds in std units equal torch's absolute bounds (+-2).
        Case(
            f"trunc_normal_ 0,1,-2,2 ({n})",
            fill_shape,
            lambda t, g: wi.trunc_normal_(t, 0.0, 1.0, -2.0, 2.0, generator=g),
            lambda t, g: init.trunc_normal_(t, 0.0, 1.0, -2.0, 2.0, generator=g),
            TRUNC_TARGET,
        ),
    ]
    orthos = [
        Case(
            f"orthogonal_ ({'x'.join(map(str, s))})",
            s,
            lambda t, g: wi.orthogonal_(t, generator=g),
            lambda t, g: init.orthogonal_(t, generator=g),
            ORTHO_TARGET,
            repeats=ortho_big_repeats if i == len(ortho_shapes) - 1 else None,
        )
        for i, s in enumerate(ortho_shapes)
    ]
    return fills + orthos


def _time_once(fn: Callable[[torch.Tensor, torch.Generator], object], t, g) -> float:
    start = time.perf_counter()
    fn(t, g)
    return time.perf_counter() - start


def run_case(case: Case, repeats: int) -> tuple[float, float, float]:
    """Median seconds (weightinit, torch) over ``repeats`` alternating calls after a warm-up,
    and the median of the per-pair ratios torch / weightinit. Each pair runs back to back, so
    a slow spell of the shared machine (seconds long) slows both calls of a pair alike; the
    ratio of separate medians would not cancel it."""
    # One tensor for both sides: two 64 MiB allocations can differ by 1-2% in fill speed.
    t_ours = t_theirs = torch.empty(case.shape, dtype=torch.float32)
    g_ours = torch.Generator().manual_seed(SEED)
    g_theirs = torch.Generator().manual_seed(SEED)
    case.ours(t_ours, g_ours)  # warm-up (also touches the pages of each tensor)
    case.theirs(t_theirs, g_theirs)
    ours, theirs = [], []
    for i in range(repeats):
        if i % 2 == 0:
            ours.append(_time_once(case.ours, t_ours, g_ours))
            theirs.append(_time_once(case.theirs, t_theirs, g_theirs))
        else:
            theirs.append(_time_once(case.theirs, t_theirs, g_theirs))
            ours.append(_time_once(case.ours, t_ours, g_ours))
    ratios = [t / o for o, t in zip(ours, theirs)]
    return statistics.median(ours), statistics.median(theirs), statistics.median(ratios)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed calls per case (default 7; 3 with --quick)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1M elements, 256x256 and 512x512 orthogonal, 3 repeats",
    )
    args = parser.parse_args(argv)

    if args.quick:
        repeats = max(1, args.repeats or 3)
        fill_shape = (1024, 1024)
        ortho_shapes = [(256, 256), (512, 512)]
        big_repeats = repeats
    else:
        repeats = max(1, args.repeats or 7)
        fill_shape = (4096, 4096)  # 16M float32 elements
        ortho_shapes = [(1024, 1024), (2048, 2048)]
        big_repeats = min(3, repeats)

    print(
        f"torch {torch.__version__}, weightinit {wi.__version__}, "
        f"threads {torch.get_num_threads()}, CPU {cpu_model()}, "
        f"Python {platform.python_version()} ({platform.system()} {platform.machine()})"
    )
    print(
        f"float32; median of {repeats} calls after 1 warm-up "
        f"(orthogonal_ {'x'.join(map(str, ortho_shapes[-1]))}: {big_repeats}); "
        "ratio = median over call pairs of torch / weightinit (higher = weightinit faster)"
    )
    if args.quick:
        print(
            "--quick: a smoke run; at these sizes per-call overheads dominate and the targets "
            "(set for the full sizes) do not apply"
        )
    print()
    rows = []
    for case in cases(fill_shape, ortho_shapes, big_repeats):
        try:
            ours, theirs, ratio = run_case(case, case.repeats or repeats)
        except Exception as exc:  # noqa: BLE001 (report a broken case and go on)
            rows.append((case.name, "-", "-", "-", case.target[1], f"ERROR ({exc!r})"[:120]))
            continue
        verdict = "PASS" if ratio >= case.target[0] else "FAIL"
        rows.append(
            (
                case.name,
                f"{ours * 1e3:.2f}",
                f"{theirs * 1e3:.2f}",
                f"{ratio:.3f}x",
                case.target[1],
                verdict,
            )
        )

    header = (
        "case",
        "weightinit ms (median)",
        "torch ms (median)",
        "ratio (torch / weightinit, median of pairs)",
        "target",
        "result",
    )
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    right = {1, 2, 3}

    def line(cells):
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths))
            )
            + " |"
        )

    print(line(header))
    print(
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)
        )
        + "|"
    )
    for r in rows:
        print(line(r))
    failed = [r[0] for r in rows if r[-1] != "PASS"]
    label = "FAIL" if all(r[-1] in ("PASS", "FAIL") for r in rows) else "FAIL or ERROR"
    print()
    print(
        f"{len(rows) - len(failed)}/{len(rows)} PASS"
        + (f"; {label}: {', '.join(failed)}" if failed else "")
    )
    return 0  # a benchmark, not a test


if __name__ == "__main__":
    main()
    sys.exit(0)
