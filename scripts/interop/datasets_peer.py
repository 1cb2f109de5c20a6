"""The HF `datasets` side of retort's data interop tests (tests/integration/interop.rs).

    python datasets_peer.py make DIR
        Builds one dataset with nested columns (a `messages` list of
        {role, content} structs, an int64 list `nums`, ints, floats, strings)
        and saves it the ways users do: DIR/hf.parquet (to_parquet),
        DIR/hub/data/train-0000{0,1}-of-00002.parquet (two shards, the Hub's
        layout), DIR/saved/ (save_to_disk, two Arrow shards).
    python datasets_peer.py same DIR PARQUET
        Loads PARQUET (a retort export) with load_dataset("parquet") and checks
        that its features and rows equal those of the dataset `make` built.
    python datasets_peer.py describe PARQUET
        Prints {"features": ..., "rows": [...]} of PARQUET as loaded by datasets.

Prints one JSON line; exits 1 with a message when a check fails.
"""

import json
import sys

import datasets


def build():
    rows = [
        {
            "id": f"r{i}",
            "prompt": f"Using the numbers {nums}, make {target}.",
            "messages": [
                {"role": "user", "content": f"make {target} from {nums}"},
                {"role": "assistant", "content": f"<answer>{target}</answer>"},
            ][: 1 + i % 2],
            "nums": nums,
            "target": target,
            "score": i / 4,
        }
        for i, (nums, target) in enumerate([([3, 5, 2], 16), ([10, 4], 14), ([7, 1, 9, 2], 63), ([8], 8)])
    ]
    return datasets.Dataset.from_list(rows)


def features(ds):
    return {k: repr(v) for k, v in ds.features.items()}


def main():
    cmd = sys.argv[1]
    if cmd == "make":
        out = sys.argv[2]
        ds = build()
        ds.to_parquet(f"{out}/hf.parquet")
        for i in range(2):
            ds.shard(2, i, contiguous=True).to_parquet(f"{out}/hub/data/train-{i:05d}-of-00002.parquet")
        ds.save_to_disk(f"{out}/saved", num_shards=2)
        print(json.dumps({"features": features(ds), "rows": ds.to_list()}))
    elif cmd == "same":
        want = build()
        got = datasets.load_dataset("parquet", data_files=sys.argv[3], split="train")
        problems = []
        if features(got) != features(want):
            problems.append(f"features differ: {features(got)} != {features(want)}")
        if got.to_list() != want.to_list():
            problems.append(f"rows differ: {got.to_list()} != {want.to_list()}")
        print(json.dumps({"same": not problems, "problems": problems}))
        sys.exit(1 if problems else 0)
    elif cmd == "describe":
        got = datasets.load_dataset("parquet", data_files=sys.argv[2], split="train")
        print(json.dumps({"features": features(got), "rows": got.to_list()}))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
