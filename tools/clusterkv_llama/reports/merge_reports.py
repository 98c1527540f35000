#!/usr/bin/env python3
"""Merges bench-shaped JSON reports into one: {"bench": "real_models", "reports": {...}, "results": [...]}.

Each row keeps its fields and gains params.report, the stem of the file it came from; each
report's own header (bench, machine, model, config) is kept under "reports".
Usage: merge_reports.py OUT.json IN.json [IN.json ...]
"""
import json
import os
import sys


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) > 1 and argv[1] in ("-h", "--help") else 2
    merged = {"bench": "real_models", "reports": {}, "results": []}
    for path in argv[2:]:
        with open(path) as f:
            report = json.load(f)
        stem = os.path.splitext(os.path.basename(path))[0]
        merged["reports"][stem] = {k: v for k, v in report.items() if k != "results"}
        for row in report.get("results", []):
            row = dict(row)
            row["params"] = dict(row.get("params", {}), report=stem)
            merged["results"].append(row)
    with open(argv[1], "w") as f:
        json.dump(merged, f, indent=1)
    print(f"{argv[1]}: {len(merged['results'])} rows from {len(argv) - 2} reports")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
