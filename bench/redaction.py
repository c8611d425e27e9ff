"""Benchmark: the redactor on terraform-like log lines, as the job log calls it (batches).

Every stored line goes through `workers.redaction.Redactor`; since it learned encoded forms,
multi-line secrets, credentials inside longer tokens and private key blocks, this measures
what that costs per line.

    .venv/bin/python bench/redaction.py [--lines 200000] [--batch 500]

Target: ≥ 100,000 lines/s with a workspace's secrets known (a terraform run prints at most a
few thousand lines a second, so redaction stays a small part of the log path).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.redaction import Redactor

TARGET_LINES_PER_SECOND = 100_000


def sample_lines(count: int) -> list[str]:
    shapes = [
        "terraform_data.app[{n}]: Creating...",
        "terraform_data.app[{n}]: Creation complete after 0s [id=6b1f0c9e-{n:08d}-4d1c-9a4e]",
        "terraform_data.app[{n}] (local-exec): step {n}: copying s3://bucket/releases/r{n}/app.tar.gz",
        "terraform_data.app[{n}] (local-exec): GET /v1/items?page={n}&sort=desc 200 12ms",
        "module.network.aws_subnet.private[{n}]: Refreshing state... [id=subnet-0a1b2c3d4e{n:06d}]",
    ]
    return [shapes[n % len(shapes)].format(n=n) for n in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    options = parser.parse_args()
    pem = "\n".join(
        [
            "-----BEGIN RSA PRIVATE KEY-----",
            *(base64.b64encode(os.urandom(48)).decode() for _ in range(25)),
            "-----END RSA PRIVATE KEY-----",
        ]
    )
    lines = sample_lines(options.lines)
    batches = ["\n".join(lines[i : i + options.batch]) for i in range(0, len(lines), options.batch)]
    print(f"{'case':<44}{'lines/s':>12}{'target':>12}")
    for label, secrets in (
        ("no secrets known", []),
        ("3 secrets known (one a 27-line PEM key)", ["tok-5f2a9c81e7", "db-pass-0c1d2e", pem]),
    ):
        redact = Redactor(secrets)
        start = time.perf_counter()
        for batch in batches:
            redact(batch)
        rate = options.lines / (time.perf_counter() - start)
        print(f"{label:<44}{rate:>12,.0f}{TARGET_LINES_PER_SECOND:>12,}")


if __name__ == "__main__":
    main()
