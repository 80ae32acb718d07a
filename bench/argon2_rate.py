"""The raw Argon2id hash rate of this machine with learndir's own hasher and parameters.

addUser with a password can go no faster than the cores can hash, so its target is a share of
this rate: one thread, then N threads in one process (argon2-cffi releases the GIL while it
hashes, as the server's thread pool relies on) and N processes.

    .venv/bin/python bench/argon2_rate.py [--seconds 10] [--parallel 2]
"""

from __future__ import annotations

import argparse
import os
import sys

from harness import PASSWORD, hash_rate, log, markdown_table, wait_until_quiet
from learndir.core.passwords import hash_password


def parameters() -> str:
    """The parameters as they appear in a hash learndir makes ($argon2id$v=19$m=..,t=..,p=..)."""
    return hash_password(PASSWORD).split("$")[3]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument(
        "--parallel",
        type=int,
        default=os.cpu_count() or 2,
        help="threads / processes for the parallel rates (default: CPU count)",
    )
    args = parser.parse_args(argv)

    wait_until_quiet()
    log("1 thread ...")
    single = hash_rate(1, args.seconds)
    log(f"{args.parallel} threads ...")
    threads = hash_rate(args.parallel, args.seconds)
    log(f"{args.parallel} processes ...")
    processes = hash_rate(args.parallel, args.seconds, processes=True)
    best = max(single, threads, processes)

    print(
        f"Argon2id {parameters()} (learndir.core.passwords), {os.cpu_count()} CPUs, "
        f"{args.seconds:g} s per measurement\n"
    )
    rows = [
        ["1 thread", f"{single:.1f}", f"{1000 / single:.1f}"],
        [
            f"{args.parallel} threads, 1 process",
            f"{threads:.1f}",
            f"{1000 * args.parallel / threads:.1f}",
        ],
        [
            f"{args.parallel} processes",
            f"{processes:.1f}",
            f"{1000 * args.parallel / processes:.1f}",
        ],
    ]
    print(markdown_table(["hashing", "hashes/s", "ms per hash"], rows))
    print(f"\nRaw rate of the machine: {best:.1f} hashes/s; 80% of it: {0.8 * best:.1f} users/s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
