"""What the numbers were measured on."""

import os
import platform
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def describe() -> dict:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "aiohttp": metadata.version("aiohttp"),
        "kernel": platform.release(),
        "load_average_at_start": os.getloadavg(),
    }
