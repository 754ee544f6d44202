"""The ``train`` objective: an ImageFolder read with PIL and a short training run (torch, CPU).

Layout (as torchvision's ``ImageFolder``, without torchvision)::

    DATA/<class>/<image>                 split ``val_fraction`` off, stratified and seeded
    DATA/train/<class>/<image> + DATA/val/<class>/<image>   used as given
"""

from __future__ import annotations

import dataclasses
import math
import random
from functools import cached_property
from pathlib import Path

from archkit.search._errors import SearchInputError
from archkit.spec import Spec

__all__ = ["ImageFolderData", "train_and_evaluate", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")


def _scan(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = []
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                items.append((path, label))
    return classes, items


@dataclasses.dataclass
class ImageFolderData:
    """Image paths and labels of a train and a validation split (images are read lazily)."""

    root: Path
    classes: list[str]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]

    def __init__(
        self,
        root: str | Path,
        *,
        val_fraction: float = 0.2,
        seed: int = 0,
        max_images: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise SearchInputError("objective_options.data", f"{str(root)!r} is not a folder")
        if (self.root / "train").is_dir() and (self.root / "val").is_dir():
            self.classes, self.train = _scan(self.root / "train")
            val_classes, self.val = _scan(self.root / "val")
            if val_classes != self.classes:
                raise SearchInputError(
                    "objective_options.data",
                    f"{root}: train/ and val/ must have the same class folders",
                )
        else:
            self.classes, items = _scan(self.root)
            rng = random.Random(seed)
            self.train, self.val = [], []
            for label in range(len(self.classes)):
                group = [item for item in items if item[1] == label]
                rng.shuffle(group)
                cut = max(1, round(len(group) * val_fraction)) if len(group) > 1 else 0
                self.val += group[:cut]
                self.train += group[cut:]
        if len(self.classes) < 2:
            raise SearchInputError(
                "objective_options.data",
                f"{root}: need at least 2 class folders, found {len(self.classes)}",
            )
        if not self.train or not self.val:
            raise SearchInputError(
                "objective_options.data",
                f"{root}: no images (looked for {', '.join(IMAGE_SUFFIXES)})",
            )
        if max_images is not None:
            rng = random.Random(seed)
            self.train = rng.sample(self.train, min(max_images, len(self.train)))
            self.val = rng.sample(self.val, min(max_images, len(self.val)))
        self._cache: dict[tuple[str, int, int], object] = {}

    def tensors(self, split: str, resolution: int, channels: int):
        """``(images N x C x R x R float32 normalized to [-1, 1], labels N)`` of a split."""
        key = (split, resolution, channels)
        if key not in self._cache:
            self._cache[key] = self._load(getattr(self, split), resolution, channels)
        return self._cache[key]

    def _load(self, items: list[tuple[Path, int]], resolution: int, channels: int):
        import numpy as np
        import torch
        from PIL import Image, UnidentifiedImageError

        mode = {1: "L", 3: "RGB"}.get(channels)
        if mode is None:
            raise SearchInputError(
                "objective_options.data",
                f"images can feed 1 or 3 input channels, the spec has {channels}",
            )
        arrays = []
        for path, _ in items:
            try:
                with Image.open(path) as image:
                    image = image.convert(mode).resize(
                        (resolution, resolution), Image.Resampling.BILINEAR
                    )
                    arrays.append(
                        np.asarray(image, dtype=np.float32).reshape(
                            resolution, resolution, channels
                        )
                    )
            except (OSError, UnidentifiedImageError) as exc:
                raise SearchInputError(
                    "objective_options.data", f"cannot read image {path}: {exc}"
                ) from None
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous() / 127.5 - 1.0
        y = torch.tensor([label for _, label in items], dtype=torch.long)
        return x, y

    @cached_property
    def summary(self) -> str:
        return (
            f"{self.root}: {len(self.classes)} classes, {len(self.train)} train / "
            f"{len(self.val)} val images"
        )


def train_and_evaluate(
    spec: Spec,
    data: ImageFolderData,
    *,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 5e-3,
    seed: int = 0,
) -> float:
    """Train ``spec`` from scratch for ``epochs`` and return validation top-1 in percent.

    AdamW with a cosine schedule, no augmentation (a few epochs rank candidates; they do not
    reach final accuracy); BatchNorm statistics are re-estimated on the training set before
    validation. Deterministic for a given seed and thread count.
    """
    import torch
    from torch import nn

    from archkit.build import build_model

    x_train, y_train = data.tensors("train", spec.resolution, spec.in_channels)
    x_val, y_val = data.tensors("val", spec.resolution, spec.in_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(spec)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        steps = epochs * math.ceil(len(x_train) / batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps))
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(x_train), generator=generator)
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                if len(index) < 2:  # BatchNorm needs more than one sample per channel
                    continue
                xb, yb = x_train[index], y_train[index]
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(xb), yb).backward()
                optimizer.step()
                schedule.step()
        _recalibrate_batchnorm(model, x_train, batch_size)
        model.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(x_val), 256):
                logits = model(x_val[start : start + 256])
                correct += int((logits.argmax(1) == y_val[start : start + 256]).sum())
    return 100.0 * correct / len(x_val)


def _recalibrate_batchnorm(model, x_train, batch_size: int) -> None:
    # After a few dozen steps the running BatchNorm statistics (momentum 0.1) still mostly hold
    # their initial values, and eval-mode accuracy is near chance whatever the network learned.
    # Re-estimate them as the plain average over the training set, as one-shot NAS does.
    import torch
    from torch import nn

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for start in range(0, len(x_train), batch_size):
            batch = x_train[start : start + batch_size]
            if len(batch) > 1:
                model(batch)
