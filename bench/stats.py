"""Medians and percentiles, without numpy."""

import math
import statistics
from array import array
from typing import Iterable


def percentile(sorted_values: list[int] | array, fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return float(sorted_values[rank])


LATENCY_POINTS = (0.5, 0.9, 0.99, 0.999)


def latency_summary_ms(latencies_us: Iterable[int]) -> dict[str, float]:
    values = sorted(latencies_us)
    summary = {f"p{point * 100:g}_ms": percentile(values, point) / 1000 for point in LATENCY_POINTS}
    summary["max_ms"] = values[-1] / 1000 if values else float("nan")
    summary["samples"] = len(values)
    return summary


def merge_latencies(blobs: Iterable[bytes]) -> array:
    merged = array("I")
    for blob in blobs:
        merged.frombytes(blob)
    return merged


def median_of_runs(runs: list[dict]) -> dict:
    """Per numeric key, the median over runs; other values from the last run."""
    if not runs:
        return {}
    result = {}
    for key, value in runs[-1].items():
        numbers = [run[key] for run in runs if isinstance(run.get(key), (int, float)) and not isinstance(run.get(key), bool)]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and numbers:
            result[key] = statistics.median(numbers)
        elif isinstance(value, bool):
            result[key] = all(run.get(key) for run in runs)
        else:
            result[key] = value
    return result
