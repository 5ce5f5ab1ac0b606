"""Instructions spent planning and applying, counted by callgrind: a measure of the library's
own work that the load of a shared machine does not move (wall times here vary by +-25% from
run to run).

The script imports weightinit, builds 1,000 Linear(8, 8) layers and warms up each operation
once, then runs the operation named on the command line 3 more times ("none": nothing more).
Per call, an operation costs (instructions of its run - instructions of the "none" run) / 3.
To compare two source trees (e.g. before and after a change), run each under callgrind:

    for op in none plan_he plan_lecun apply apply_atomic; do
      PYTHONPATH=path/to/src valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/instructions_plan_apply.py $op 2>&1 | grep Collected
    done

About 4 minutes per run (most of it importing torch under valgrind). "plan_he" traces the model
with torch.fx and plans "he"; "plan_lecun" plans without a trace (the planner alone);
"apply" is ``plan.apply(model, atomic=False)``, "apply_atomic" ``plan.apply(model)``. The
garbage collector is off for the measured calls: a full collection costs tens of millions of
instructions and falls wherever the count of allocations since the last one says, so with it
on, one collection more or less in a run, not the code, would decide the difference.
"""

import gc
import sys

import torch
from torch import nn

import weightinit as wi

OPERATIONS = ("none", "plan_he", "plan_lecun", "apply", "apply_atomic")


def main() -> None:
    op = sys.argv[1] if len(sys.argv) > 1 else "none"
    if op not in OPERATIONS:
        raise SystemExit(f"operation must be one of {', '.join(OPERATIONS)}, got {op!r}")
    torch.set_num_threads(1)
    model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(1_000)])
    gen = torch.Generator().manual_seed(0)
    plan = wi.plan(model, "he")
    wi.plan(model, "lecun")
    plan.apply(model, generator=gen, atomic=False)
    gc.collect()
    gc.disable()
    for _ in range(3):
        if op == "plan_he":
            wi.plan(model, "he")
        elif op == "plan_lecun":
            wi.plan(model, "lecun")
        elif op == "apply":
            plan.apply(model, generator=gen, atomic=False)
        elif op == "apply_atomic":
            plan.apply(model, generator=gen)


if __name__ == "__main__":
    main()
