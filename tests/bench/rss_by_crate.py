#!/usr/bin/env python3
"""Which crates' code a running process keeps resident.

    python3 tests/bench/rss_by_crate.py PID BINARY

BINARY must be the unstripped executable PID runs (build with CARGO_PROFILE_RELEASE_STRIP=false).
Reads /proc/PID/maps and /proc/PID/pagemap (root, or CAP_SYS_ADMIN, for the present bits), and
charges each resident 4 KiB page of BINARY to the symbols (`nm -S -C`) that lie in it, grouped by
the first path segment of the demangled name (`tokio`, `redb`, `aws_smithy_runtime`, ...).
Generic code instantiated elsewhere is charged to the crate that defines it (`core` for
`drop_in_place`, for example)."""
import collections
import re
import struct
import subprocess
import sys


def main():
    pid, binary = int(sys.argv[1]), sys.argv[2]
    maps = []
    for line in open(f"/proc/{pid}/maps"):
        p = line.split()
        if len(p) >= 6 and p[5] == binary:
            lo, hi = (int(x, 16) for x in p[0].split("-"))
            maps.append((lo, hi, int(p[2], 16)))
    if not maps:
        sys.exit(f"{binary} is not mapped by process {pid}")
    bias = min(lo - off for lo, _, off in maps)
    resident = set()
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        for lo, hi, _ in maps:
            for addr in range(lo, hi, 4096):
                pm.seek(addr // 4096 * 8)
                if struct.unpack("<Q", pm.read(8))[0] >> 63 & 1:
                    resident.add(addr - bias)
    nm = subprocess.run(["nm", "-n", "-S", "-C", "--defined-only", binary],
                        capture_output=True, text=True, check=True).stdout
    here, total = collections.Counter(), collections.Counter()
    for line in nm.splitlines():
        f = line.split(" ", 3)
        if len(f) != 4 or f[2] not in "tTrRdD":
            continue
        start, size, name = int(f[0], 16), int(f[1], 16), f[3]
        crate = crate_of(name)
        total[crate] += size
        addr = start
        while addr < start + size:
            page = addr & ~4095
            end = min(page + 4096, start + size)
            if page in resident:
                here[crate] += end - addr
            addr = end
    print(f"resident pages of {binary}: {len(resident) * 4} KiB")
    print(f"{'crate':28} {'resident KiB':>12} {'size KiB':>10}")
    for crate, n in here.most_common(40):
        print(f"{crate:28} {n // 1024:12} {total[crate] // 1024:10}")
    print(f"symbols: {sum(here.values()) // 1024} KiB resident of {sum(total.values()) // 1024} KiB")


def crate_of(name):
    name = re.sub(r"^[<&*( ]*(dyn |impl |mut |const )?", "", name)
    m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", name)
    return m.group(0) if m else "?"


if __name__ == "__main__":
    main()
