#!/usr/bin/env python3
"""Independent check of a Stela log, with the Python standard library only.

Fetches the signed checkpoint and the level-0 hash tiles and entry bundles of the C2SP
tlog-tiles layout, recomputes every leaf hash (SHA-256 of 0x00 || entry, RFC 6962), checks it
against the tiles, recomputes the root of the whole tree and compares it with the checkpoint.
It does not check the signature (that needs Ed25519, outside the standard library; the Rust
verifier does it).

Usage: verify_tiles.py http://127.0.0.1:8080
Exit status 0 when the root matches, 1 otherwise.
"""

import base64
import hashlib
import sys
import urllib.request


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def tile_index_path(n):
    """C2SP tlog-tiles: N in groups of three digits, every group but the last prefixed with x."""
    digits = f"{n:03d}"
    if len(digits) % 3:
        digits = "0" * (3 - len(digits) % 3) + digits
    groups = [digits[i:i + 3] for i in range(0, len(digits), 3)]
    return "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])


def root(hashes):
    """RFC 6962 Merkle tree hash of a list of leaf hashes."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + root(hashes[:k]) + root(hashes[k:])).digest()


def main(base):
    note = fetch(f"{base}/log/checkpoint").decode()
    lines = note.split("\n")
    origin, size, root_b64 = lines[0], int(lines[1]), lines[2]
    expected = base64.b64decode(root_b64)
    leaves = []
    for index in range((size + 255) // 256):
        width = min(256, size - index * 256)
        suffix = "" if width == 256 else f".p/{width}"
        tile = fetch(f"{base}/log/tile/0/{tile_index_path(index)}{suffix}")
        bundle = fetch(f"{base}/log/tile/entries/{tile_index_path(index)}{suffix}")
        position = 0
        for j in range(width):
            length = int.from_bytes(bundle[position:position + 2], "big")
            entry = bundle[position + 2:position + 2 + length]
            position += 2 + length
            leaf = hashlib.sha256(b"\x00" + entry).digest()
            if leaf != tile[32 * j:32 * (j + 1)]:
                print(f"entry {index * 256 + j}: its hash differs from the tile")
                return 1
            leaves.append(leaf)
    computed = root(leaves)
    if computed != expected:
        print(f"{origin}: the root of {size} entries does NOT match the checkpoint")
        return 1
    print(f"{origin}: root of {size} entries recomputed with hashlib matches the checkpoint")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1].rstrip("/")))
