"""The automatic schemes on the model zoo: per-layer signal scale and the analytic prediction.

For every model of ``weightinit.zoo.ZOO`` (depth 100, and the same architectures at depth 10),
initialize it with
- "auto" (analytic plan + the stabilizing sweep on a Gaussian stand-in for the input),
- "auto" with ``stabilize=False`` (the analytic plan alone),
- "lsuv" on the example batch,
and measure with ``weightinit.diagnose`` the std each scheme sets at every weighted layer (gate
pre-activations for recurrent layers, see ``zoo.layer_scales``): min and max over layers. For the
analytic plan also the median and maximum relative error between the predicted output std
(``plan.predictions``) and the measured variance averaged over weight draws (2 at depth 100,
16 at depth 10: one draw of a width-64 ReLU layer deviates by ~ 1/sqrt(64) on its own, and
those deviations compound over depth).

    python benchmarks/bench_zoo.py            # markdown tables for docs/automatic.md
"""

from __future__ import annotations

import argparse
import statistics
import time

import weightinit as wi
from weightinit import zoo


def scales(model, x) -> list[float]:
    return zoo.layer_scales(wi.diagnose(model, x, exact_limit=0, probes=2))


def prediction_errors(factory, draws: int = 4) -> list[float]:
    """Per layer: |sqrt(mean measured variance) - predicted std| / predicted std, the variance
    averaged over ``draws`` weight draws (the prediction is an expectation over the weights;
    one draw of a width-64 layer deviates from it by ~ 1/sqrt(64) on its own)."""
    variances: dict[str, list[float]] = {}
    predicted: dict[str, float] = {}
    for seed in range(draws):
        model, x = factory()
        plan = wi.init(model, "auto", example_input=x, seed=seed, stabilize=False)
        report = wi.diagnose(model, x, exact_limit=0, probes=2, plan=plan)
        for layer in report.layers:
            if layer.predicted_std:
                variances.setdefault(layer.name, []).append(layer.std**2)
                predicted[layer.name] = layer.predicted_std
    return [
        abs(statistics.fmean(v) ** 0.5 - predicted[name]) / predicted[name]
        for name, v in variances.items()
    ]


def at_depth(name: str, depth: int):
    factory = zoo.ZOO[name]
    if name.startswith("lstm"):
        return factory
    return lambda: factory.func(depth, *factory.args[1:], **factory.keywords)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(zoo.ZOO), help="comma-separated zoo names")
    names = parser.parse_args().models.split(",")
    print("| model | auto: min-max std | auto time (s) | lsuv: min-max std | lsuv time (s) "
          "| analytic only: min-max std | prediction error, depth 100: median / max "
          "| depth 10: median / max |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        row = [name]
        for scheme, kw in [("auto", "example_input"), ("lsuv", "data")]:
            model, x = zoo.ZOO[name]()
            start = time.perf_counter()
            wi.init(model, scheme, seed=0, **{kw: x})
            elapsed = time.perf_counter() - start
            s = scales(model, x)
            row += [f"{min(s):.2f}-{max(s):.2f}", f"{elapsed:.2f}"]
        model, x = zoo.ZOO[name]()
        wi.init(model, "auto", example_input=x, seed=0, stabilize=False)
        s = scales(model, x)
        row.append(f"{min(s):.2g}-{max(s):.2g}")
        for depth, draws in ((100, 2), (10, 16)):
            errors = prediction_errors(at_depth(name, depth), draws)
            row.append(f"{statistics.median(errors):.1%} / {max(errors):.3g}")
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
