"""Named vs unnamed pixels: how well does each shipped model leave out what it was not asked for?

On synthetic validation scenes 0-299, each segmented through `Segmenter.segment` with a
vocabulary that names only half of the object classes present (floor(n/2) of the n present
stay unnamed) plus "background" (training/open_set_calibration.py). For LDVC, DeOP and the
training-free baseline, side by side in one run: the AUROC of named-vs-unnamed object pixels
under the rule's score (the top probability; "background" pixels score lowest), the curve
(named-object pixels kept vs unnamed-object pixels unlabeled per threshold), and the
operating point of each model's shipped threshold (calibrated on scenes 300-499). Results and
commands: docs/open_set.md.

    python bench/open_set.py [--configs checkpoints/synthetic/ldvc.yaml ...] [--json bench_out/open_set.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.open_set_calibration import CURVE_THRESHOLDS, measure, segmenter_for  # noqa: E402

SHIPPED = ["checkpoints/synthetic/ldvc.yaml", "checkpoints/synthetic/deop.yaml",
           "checkpoints/synthetic/clip_baseline.yaml"]


def pct(value: float) -> str:
    return f"{100 * value:5.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=SHIPPED)
    parser.add_argument("--json", help="also write every number here")
    args = parser.parse_args(argv)
    results = {}
    for config in args.configs:
        segmenter, world = segmenter_for(config, None, [])
        results[Path(config).stem] = {"threshold_source": segmenter.threshold_source,
                                      **measure(segmenter, world, segmenter.unlabeled_threshold)}
    print(f"{'model':14s} {'AUROC':>6s} | shipped threshold: {'t':>6s} {'named kept':>10s} {'(right class)':>13s} "
          f"{'unnamed unlab.':>14s} {'backgr. unlab.':>14s} | threshold 0: named kept, unnamed unlab.")
    for name, r in results.items():
        p, z = r["operating_point"], r["at_threshold_0"]
        print(f"{name:14s} {r['auroc']:6.3f} | {p['threshold']:25.3f} {pct(p['named_kept']):>10s} "
              f"{pct(p['named_kept_correct']):>13s} {pct(p['unnamed_unlabeled']):>14s} "
              f"{pct(p['background_unlabeled']):>14s} | {pct(z['named_kept'])}, {pct(z['unnamed_unlabeled'])}")
    print("\ncurve: named kept % / unnamed unlabeled % per threshold")
    print(f"{'t':>5s} " + " ".join(f"{name:>14s}" for name in results))
    for i, t in enumerate(CURVE_THRESHOLDS):
        cells = [f"{pct(r['curve'][i]['named_kept'])}/{pct(r['curve'][i]['unnamed_unlabeled'])}"
                 for r in results.values()]
        print(f"{t:5.2f} " + " ".join(f"{c:>14s}" for c in cells))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
