"""Train rmtkit's embedded default model: a small CNN on scikit-learn's bundled digits data.

Writes ``rmtkit/data/digits_cnn.onnx`` (exported with ``torch.onnx``) and
``rmtkit/data/digits_cnn.json`` (architecture, training settings, seed, test accuracy).
Deterministic: fixed seed, one thread, deterministic algorithms. Needs torch, onnx and
scikit-learn (a training-only dependency; rmtkit itself never imports it). Run from the repo root:

    python scripts/train_default_model.py
"""

import json
import platform
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SEED = 0
EPOCHS = 60
BATCH = 64
LR = 1e-3
WEIGHT_DECAY = 1e-4
OUT = Path(__file__).resolve().parent.parent / "rmtkit" / "data"


class DigitsCNN(nn.Module):
    """8x8 grey digits -> 10 classes."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def main() -> None:
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (n, 1, 8, 8) in [0, 1]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    x_tr, x_te = torch.from_numpy(x_tr), torch.from_numpy(x_te)
    y_tr, y_te = torch.from_numpy(y_tr), torch.from_numpy(y_te)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        model.train()
        for idx in torch.randperm(len(x_tr), generator=gen).split(BATCH):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc_te = (model(x_te).argmax(1) == y_te).float().mean().item()
        acc_tr = (model(x_tr).argmax(1) == y_tr).float().mean().item()
    OUT.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (x_te[:1],),
            str(OUT / "digits_cnn.onnx"),
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )
    meta = {
        "name": "digits_cnn",
        "file": "digits_cnn.onnx",
        "task": "scikit-learn load_digits (1797 8x8 grey images, 10 classes), pixels / 16",
        "input": "image: float32 (batch, 1, 8, 8) in [0, 1]",
        "architecture": [
            "Conv2d(1, 16, 3, padding=1) + ReLU",
            "Conv2d(16, 64, 3, padding=1) + ReLU + MaxPool2d(2)",
            "Flatten -> Linear(1024, 128) + ReLU",
            "Linear(128, 64) + ReLU",
            "Linear(64, 10)",
        ],
        "training": {
            "optimizer": "Adam",
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            "epochs": EPOCHS,
            "batch_size": BATCH,
            "loss": "cross-entropy",
            "split": "train_test_split test_size=0.25 stratified, random_state=seed",
            "seed": SEED,
        },
        "n_train": len(x_tr),
        "n_test": len(x_te),
        "train_accuracy": round(acc_tr, 4),
        "test_accuracy": round(acc_te, 4),
        "script": "scripts/train_default_model.py",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "n_params": sum(p.numel() for p in model.parameters()),
    }
    (OUT / "digits_cnn.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
