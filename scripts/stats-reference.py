#!/usr/bin/env python3
"""Reference values for `stages/src/stats.rs`, from libraries that are not ours.

    scripts/stats-reference.py            # creates .venv-stats on first use, then prints

Prints, for count tables chosen to cover small, zero-discordant, one-sided and
large (n = 300) cases:

- the 95% Wilson interval, from statsmodels
  (`statsmodels.stats.proportion.proportion_confint(method="wilson")`);
- the exact McNemar p-value, from statsmodels
  (`statsmodels.stats.contingency_tables.mcnemar(table, exact=True)`),
  cross-checked against scipy's two-sided exact binomial test;
- Newcombe's (1998) method 10 interval for a paired difference of proportions,
  from the implementation below, written from the paper's formulas and
  independently of the Rust one (it takes the marginal Wilson limits from
  statsmodels, and the correlation correction in integer arithmetic);
- pass@k from exact binomial coefficients (`math.comb`) and mean ± sample sd
  from `statistics`, for the small helpers.

The Rust unit tests pin these numbers (to 1e-12 or so); the test module says
which command produced them. Nothing here is random.
"""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(REPO, ".venv-stats")
PY = os.path.join(VENV, "bin", "python")
PINS = ["scipy==1.17.1", "statsmodels==0.15.0"]


def ensure_venv():
    """Re-exec inside .venv-stats (created and filled from PyPI on first use)."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(PY):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([PY, "-m", "pip", "install", "-q", *PINS])
    os.execv(PY, [PY, os.path.abspath(__file__), *sys.argv[1:]])


ensure_venv()

import math  # noqa: E402
import statistics  # noqa: E402

import scipy  # noqa: E402
import statsmodels  # noqa: E402
from scipy.stats import binomtest, norm  # noqa: E402
from statsmodels.stats.contingency_tables import mcnemar  # noqa: E402
from statsmodels.stats.proportion import proportion_confint  # noqa: E402

Z = norm.ppf(0.975)


def wilson(x, n):
    lo, hi = proportion_confint(x, n, alpha=0.05, method="wilson")
    return float(lo), float(hi)


def newcombe10(a, b, c, d):
    """Newcombe (1998) method 10 for theta = p1 - p2 with paired data.

    a = both succeed, b = only the first, c = only the second, d = neither.
    p1 = (a+b)/n, p2 = (a+c)/n, each with its Wilson interval (l_i, u_i).
    phi is the correlation of the 2x2 table, (ad - bc)/sqrt(efgh) over the
    margins e, f, g, h, with Newcombe's correction: when ad > bc the numerator
    is max(ad - bc - n/2, 0); phi = 0 when a margin is empty.
    L = D - sqrt((p1-l1)^2 - 2 phi (p1-l1)(u2-p2) + (u2-p2)^2)
    U = D + sqrt((u1-p1)^2 - 2 phi (u1-p1)(p2-l2) + (p2-l2)^2)
    """
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n)
    l2, u2 = wilson(a + c, n)
    e, f, g, h = a + b, c + d, a + c, b + d
    num2 = 2 * (a * d - b * c)  # twice the numerator, so n/2 stays an integer
    if num2 > 0:
        num2 = max(num2 - n, 0)
    phi = 0.0 if 0 in (e, f, g, h) else (num2 / 2) / math.sqrt(e * f * g * h)
    D = (b - c) / n
    lo = D - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    hi = D + math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    return max(lo, -1.0), min(hi, 1.0), phi


def mcnemar_exact(a, b, c, d):
    p = float(mcnemar([[a, b], [c, d]], exact=True).pvalue)
    # scipy's two-sided test at p = 1/2 sums the tails as likely as the observed
    # count, which for a symmetric distribution is the doubled smaller tail.
    q = 1.0 if b + c == 0 else float(binomtest(min(b, c), b + c, 0.5).pvalue)
    assert abs(p - q) <= 1e-12 * max(p, 1e-300) or abs(p - q) < 1e-15, (a, b, c, d, p, q)
    return p


def pass_at_k(n, c, k):
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


# (both, only_a, only_b, neither)
TABLES = [
    (1, 1, 7, 12),  # Bentur et al. 2009, in Fagerland, Lydersen & Laake (2014, 2017)
    (59, 6, 16, 80),  # Cavo et al. 2012, ibid.: -0.0621 (-0.1186 to -0.0046)
    (10, 15, 5, 20),  # R diffdepprop's example
    (5, 0, 0, 5),  # no discordant pairs
    (0, 0, 0, 10),  # both always wrong
    (10, 0, 0, 0),  # both always right
    (3, 4, 4, 9),  # b = c
    (0, 3, 0, 7),  # one-sided, a margin of B empty
    (2, 5, 1, 22),  # n = 30, the quickstart's size
    (120, 40, 22, 118),  # n = 300
    (30, 25, 10, 235),  # n = 300, rare successes
    (150, 0, 12, 138),  # n = 300, all discordant one way
]

# (successes, n)
WILSON = [(0, 10), (10, 10), (1, 21), (8, 21), (4, 30), (13, 30), (0, 300), (3, 300), (91, 300), (150, 300), (1, 1)]

PASS = [(10, 3, 1), (10, 3, 5), (20, 1, 10), (50, 7, 8), (5, 0, 2), (8, 6, 3)]

# (b, c): exact McNemar with many discordant pairs, where 2^-(b+c) underflows
MCNEMAR_LARGE = [(900, 1100), (4990, 5010), (0, 1074), (30, 70), (3, 4)]

SEEDS = [[0.3], [0.3, 0.5], [0.133, 0.3, 0.2], [1.0, 2.0, 4.0, 8.0]]


def main():
    print(f"# scripts/stats-reference.py  scipy {scipy.__version__}  statsmodels {statsmodels.__version__}  z = {float(Z)!r}")
    print("# wilson: (successes, n, lo, hi)")
    for x, n in WILSON:
        lo, hi = wilson(x, n)
        print(f"({x}, {n}, {lo!r}, {hi!r}),")
    print("# paired: (both, only_a, only_b, neither, p_mcnemar_exact, newcombe_lo, newcombe_hi)   # phi")
    for a, b, c, d in TABLES:
        p = mcnemar_exact(a, b, c, d)
        lo, hi, phi = newcombe10(a, b, c, d)
        print(f"({a}, {b}, {c}, {d}, {p!r}, {lo!r}, {hi!r}),   # phi {phi!r}")
    print("# mcnemar_exact: (b, c, p)")
    for b, c in MCNEMAR_LARGE:
        print(f"({b}, {c}, {mcnemar_exact(0, b, c, 0)!r}),")
    print("# pass_at_k: (n, c, k, value)")
    for n, c, k in PASS:
        print(f"({n}, {c}, {k}, {pass_at_k(n, c, k)!r}),")
    print("# mean_sd: (values, mean, sd)")
    for v in SEEDS:
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        print(f"(&{v!r}, {statistics.fmean(v)!r}, {sd!r}),")


if __name__ == "__main__":
    main()
