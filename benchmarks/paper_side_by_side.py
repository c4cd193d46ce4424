"""The paper's Table 1 gaps and Table 2 ordering beside the measured ones (a section of docs/results.md).

The paper's numbers come from zoo/paper_results.toml (realspike's copy of the paper's tables); the measured
ones from benchmarks/results/paper_claims.json. Only the direction of each claim is tested: the scales are
too different for magnitudes to compare. A claim is "reproduced" when a one-sided paired t-test over the
seeds puts the difference above 0 at the 95 % level, "reversed" when it puts it below 0, and "not
reproduced (within seed variation)" otherwise.
"""

from __future__ import annotations

import math
import statistics

from realspike_cli.core.paper_results import PaperResults

# Student's t, 95 % one-sided critical values by degrees of freedom (e.g. scipy.stats.t.ppf(0.95, df));
# beyond 10 the value for 10 is used, which only makes the test stricter.
T_CRIT_95_ONE_SIDED = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860,
                       9: 1.833, 10: 1.812}
SETTINGS = ("binary", "layer", "channel", "element")
PAPER_SETS = (("cifar10", "CIFAR-10"), ("cifar100", "CIFAR-100"))
# Sec. 4.2's claims about Table 2, as (better, worse) pairs.
TABLE2_CLAIMS = (("layer", "binary"), ("channel", "binary"), ("element", "binary"), ("element", "layer"),
                 ("element", "channel"))


def paired_differences(results: list[dict], steps: int, better: str, worse: str) -> list[float]:
    """better − worse in top-1 points, one per seed that trained both."""
    by_seed = {(r["spike"], r["seed"]): r["top1_train_form"] for r in results if r["T"] == steps}
    seeds = sorted({s for (spike, s) in by_seed if spike == better} & {s for (spike, s) in by_seed if spike == worse})
    return [100 * (by_seed[(better, s)] - by_seed[(worse, s)]) for s in seeds]


def verdict(diffs: list[float]) -> str:
    """Whether 'difference > 0' holds over the seeds (one-sided paired t-test, 95 %)."""
    if len(diffs) < 2:
        return "not tested (fewer than 2 seeds)"
    mean, spread = statistics.mean(diffs), statistics.stdev(diffs)
    t = math.copysign(math.inf, mean) if spread == 0 else mean / (spread / math.sqrt(len(diffs)))
    critical = T_CRIT_95_ONE_SIDED[min(len(diffs) - 1, 10)]
    if t > critical:
        return "reproduced"
    if t < -critical:
        return "not reproduced (reversed)"
    return "not reproduced (within seed variation)"


def _measured(diffs: list[float]) -> str:
    if not diffs:
        return "not measured"
    spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    wins = sum(d > 0 for d in diffs)
    return f"{statistics.mean(diffs):+.2f} ± {spread:.2f} ({wins}/{len(diffs)} seeds): {verdict(diffs)}"


def _paper(paper: PaperResults, table: str, dataset: str, steps: int, spike: str) -> float:
    (row,) = [r for r in paper.table(table) if r.key == (dataset, "resnet20", steps, spike)]
    return row.top1


def scale_lines(networks: list[tuple[str, float]], parameters: dict[str, int], epochs: int) -> list[str]:
    here = "; ".join(f"`{a}` at width {w} ({parameters[f'{a}-{w}']:,} parameters, binary)" for a, w in networks)
    return [
        "| | paper (Guo et al., ECCV 2022, Tables 1 and 2) | measured here |",
        "|---|---|---|",
        "| data set | CIFAR-10 and CIFAR-100: 50,000 training / 10,000 test images, 32×32 colour, 10 / 100 "
        "classes | mnist10k: 8,000 training / 2,000 test digits, 28×28 grey, 10 classes |",
        f"| network | ResNet20 at full width ({parameters['resnet20-1.0']:,} parameters on CIFAR-10, binary) "
        f"| {here} |",
        "| training | in the paper's appendix, not in its text (the authors' released code: 400 epochs, batch "
        f"128, SGD 0.1, AutoAugment + Cutout) | {epochs} epochs, batch 64, SGD lr 0.05, cosine, no augmentation |",
        "| trials | one number per configuration (no ±; the number of runs is not stated) | 3 seeds per "
        "configuration; differences paired by seed, mean ± sample std |",
        "| model selection | the authors' released code keeps the best test-set epoch | the final weights "
        "(no selection) |",
    ]


def table1_lines(paper: PaperResults, groups: dict[tuple[str, float], list[dict]]) -> list[str]:
    head = " | ".join(f"here: `{a}` ×{w}" for a, w in groups)
    lines = ["", "### Table 1: real spikes − binary spikes, top-1 points (Sec. 4.1: RS beats BS at every T)", "",
             f"| T | paper CIFAR-10 | paper CIFAR-100 | {head} |", "|---|---|---|" + "---|" * len(groups)]
    for steps in (2, 4, 6):
        gaps = [_paper(paper, "Table 1", d, steps, "element") - _paper(paper, "Table 1", d, steps, "binary")
                for d, _ in PAPER_SETS]
        here = [_measured(paired_differences(g, steps, "element", "binary")) for g in groups.values()]
        lines.append(f"| {steps} | {gaps[0]:+.2f} | {gaps[1]:+.2f} | " + " | ".join(here) + " |")
    return lines


def table2_lines(paper: PaperResults, groups: dict[tuple[str, float], list[dict]]) -> list[str]:
    head = " | ".join(f"here: `{a}` ×{w}" for a, w in groups)
    rule = "|---|---|---|" + "---|" * len(groups)
    lines = ["", "### Table 2: the four settings at T = 4, top-1 (%)", "",
             f"| setting | paper CIFAR-10 | paper CIFAR-100 | {head} |", rule]
    means = {}
    for spike in SETTINGS:
        cells = [f"{_paper(paper, 'Table 2', d, 4, spike):.2f}" for d, _ in PAPER_SETS]
        for key, g in groups.items():
            values = [100 * r["top1_train_form"] for r in g if r["T"] == 4 and r["spike"] == spike]
            means.setdefault(key, {})[spike] = statistics.mean(values)
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.2f} ± {spread:.2f}")
        lines.append(f"| {spike} | " + " | ".join(cells) + " |")
    orders = [" < ".join(sorted(SETTINGS, key=lambda s: _paper(paper, "Table 2", d, 4, s))) for d, _ in PAPER_SETS]
    orders += [" < ".join(sorted(SETTINGS, key=means[key].get)) for key in groups]
    lines.append("| order, lowest first | " + " | ".join(orders) + " |")
    lines += ["", "Sec. 4.2's claims about Table 2, difference in top-1 points (paper: CIFAR-10 / CIFAR-100):", "",
              f"| claim | paper | {head} |", "|---|---|" + "---|" * len(groups)]
    for better, worse in TABLE2_CLAIMS:
        gaps = [_paper(paper, "Table 2", d, 4, better) - _paper(paper, "Table 2", d, 4, worse) for d, _ in PAPER_SETS]
        here = [_measured(paired_differences(g, 4, better, worse)) for g in groups.values()]
        lines.append(f"| {better} > {worse} | {gaps[0]:+.2f} / {gaps[1]:+.2f} | " + " | ".join(here) + " |")
    paper_order = " < ".join(SETTINGS)
    cells = ["reproduced (order of the means)" if o == paper_order else "not reproduced" for o in orders[2:]]
    lines.append(f"| order {paper_order} | holds / holds | " + " | ".join(cells) + " |")
    return lines + _layer_gap_lines(paper)


def _layer_gap_lines(paper: PaperResults) -> list[str]:
    """Sec. 4.2 also says layer − binary > element − layer; the paper's own Table 2 decides it per data set."""
    parts = []
    for dataset, label in PAPER_SETS:
        low = _paper(paper, "Table 2", dataset, 4, "layer") - _paper(paper, "Table 2", dataset, 4, "binary")
        high = _paper(paper, "Table 2", dataset, 4, "element") - _paper(paper, "Table 2", dataset, 4, "layer")
        parts.append(f"{label} {low:.2f} {'>' if low > high else '≤'} {high:.2f} "
                     f"({'holds' if low > high else 'does not hold'})")
    return ["", "Sec. 4.2 also states that layer-wise − binary exceeds element-wise − layer-wise. In the paper's own "
            "Table 2: " + "; ".join(parts) + "."]


def side_by_side_lines(paper: PaperResults, groups: dict[tuple[str, float], list[dict]],
                       parameters: dict[str, int], epochs: int) -> list[str]:
    lines = ["", "## Beside the paper", "",
             "The paper's numbers are those of `zoo/paper_results.toml` (Guo et al., ECCV 2022, Tables 1 and 2). "
             "The measurements here are far smaller in every respect, so only the **direction** of each claim is "
             "compared, never its size:", ""]
    lines += scale_lines(list(groups), parameters, epochs)
    lines += ["", "A claim is *reproduced* when a one-sided paired t-test over the seeds puts the difference above "
              "0 at the 95 % level, *not reproduced (reversed)* when it puts it below 0, and *not reproduced "
              "(within seed variation)* otherwise."]
    return lines + table1_lines(paper, groups) + table2_lines(paper, groups) + summary_lines(groups)


def summary_lines(groups: dict[tuple[str, float], list[dict]]) -> list[str]:
    """One computed sentence per network: how many of the paper's directions reproduce at this scale."""
    lines = ["", "In short, at this scale:", ""]
    for (arch, width), g in groups.items():
        t1 = [t for t in (2, 4, 6) if verdict(paired_differences(g, t, "element", "binary")) == "reproduced"]
        t2 = [f"{b} > {w}" for b, w in TABLE2_CLAIMS if verdict(paired_differences(g, 4, b, w)) == "reproduced"]
        t1_text = f"at T = {', '.join(map(str, t1))} only" if t1 else "at no T"
        order = "reproduced (in the means)" if _order_holds(g) else "not reproduced"
        lines.append(f"- `{arch}` ×{width}: Table 1's RS > BS is reproduced {t1_text} (of T = 2, 4, 6); of "
                     f"Table 2's {len(TABLE2_CLAIMS)} pairwise claims, reproduced: {', '.join(t2) or 'none'}; "
                     f"its full order: {order}.")
    return lines


def _order_holds(results: list[dict]) -> bool:
    means = {s: statistics.mean(r["top1_train_form"] for r in results if r["T"] == 4 and r["spike"] == s)
             for s in SETTINGS}
    return tuple(sorted(SETTINGS, key=means.get)) == SETTINGS
