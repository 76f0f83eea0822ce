"""Writes a text file as nanoGPT-style tokens: raw little-endian uint16 character ids (sorted-character vocabulary)."""
import sys
import numpy as np

src, dst = sys.argv[1], sys.argv[2]
text = open(src, encoding="utf-8").read()
ids_of = {c: i for i, c in enumerate(sorted(set(text)))}
ids = np.array([ids_of[c] for c in text], dtype=np.uint16)
ids.tofile(dst)
print(f"{len(ids)} tokens, d_vocab {len(ids_of)} -> {dst}")
