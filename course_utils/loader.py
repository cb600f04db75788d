"""The fast path: MNIST held in memory as tensors, batched on tensors, augmented a batch at a time.

The whole set is ~47 MB as uint8, so it lives in memory; each batch is converted to float and
normalised with ``MNIST_MEAN``/``MNIST_STD`` only when it is used. Augmentation (a small random
rotation / translation / scale, as the course teaches with ``transforms.RandomRotation``) is one
``affine_grid`` + ``grid_sample`` call for the whole batch instead of a PIL call per image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import MNIST_MEAN, MNIST_STD, load_uint8


def affine(x: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor,
           fill: float = 0.0) -> torch.Tensor:
    """Rotate each image of ``x`` (N, C, H, W) by ``angle[i]`` degrees (counter-clockwise,
    as ``torchvision``'s ``rotate``), zoom by
    ``scale[i]`` and shift by ``(tx[i], ty[i])`` fractions of the image, in one ``grid_sample``.
    Pixels coming from outside the image get ``fill``."""
    rad = angle.to(torch.float32) * (math.pi / 180.0)
    cos, sin = torch.cos(rad) / scale, torch.sin(rad) / scale
    # affine_grid maps output to input coordinates (in [-1, 1]): theta is the inverse transform,
    # input = A (output - shift), with the shift applied after rotation/zoom as torchvision does.
    sx, sy = 2 * tx, 2 * ty
    theta = torch.stack([torch.stack([cos, -sin, -(cos * sx - sin * sy)], 1),
                         torch.stack([sin, cos, -(sin * sx + cos * sy)], 1)], 1)
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x - fill if fill else x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill if fill else out


def random_affine(x: torch.Tensor, *, degrees: float = 0.0, translate: float = 0.0, scale: float = 0.0,
                  fill: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply an independent random affine transform to every image of a batch ``x`` (N, C, H, W).

    ``degrees``: rotation drawn uniformly from [-degrees, degrees]; ``translate``: shift as a
    fraction of the image size in [-translate, translate]; ``scale``: zoom in [1-scale, 1+scale].
    ``fill`` is the value outside the image (0 = black for images in [0, 1]). Shape, dtype and
    device are kept, so labels stay valid.
    """
    if x.dim() != 4:
        raise ValueError(f"random_affine expects a batch (N, C, H, W), got shape {tuple(x.shape)}")
    if degrees == 0 and translate == 0 and scale == 0:
        return x
    n = x.shape[0]

    def uniform(bound):
        return torch.rand(n, generator=generator).mul_(2 * bound).sub_(bound)

    return affine(x, uniform(degrees), 1 + uniform(scale), uniform(translate), uniform(translate), fill)


class TensorLoader:
    """Iterate over ``(images, labels)`` batches of in-memory uint8 tensors.

    Shuffling is a ``randperm`` per epoch from the loader's own seeded generator, so a run is
    reproducible from its seed. Batches come out normalised float32 (N, 1, 28, 28), augmented when
    an augmentation is set, and in channels_last memory format when asked (faster convolutions on
    CPU). The last partial batch is kept unless ``drop_last``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, shuffle: bool = False,
                 rotation: float = 0.0, translate: float = 0.0, scale: float = 0.0, seed: int = 0,
                 drop_last: bool = False, channels_last: bool = False, device: str | torch.device = "cpu"):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if images.dtype != torch.uint8:
            raise TypeError(f"TensorLoader holds uint8 images, got {images.dtype}")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.rotation, self.translate, self.scale = rotation, translate, scale
        self.channels_last, self.device = channels_last, torch.device(device)
        self.generator = torch.Generator().manual_seed(int(seed))

    @property
    def augments(self) -> bool:
        return bool(self.rotation or self.translate or self.scale)

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.images)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = slice(start, start + self.batch_size) if order is None else order[start:start + self.batch_size]
            x = self.images[idx].to(self.device, non_blocking=True).float().div_(255.0).unsqueeze_(1)
            if self.augments:
                x = random_affine(x, degrees=self.rotation, translate=self.translate, scale=self.scale,
                                  generator=self.generator)
            x = x.sub_(MNIST_MEAN).div_(MNIST_STD)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx].to(self.device, non_blocking=True)


@dataclass
class MNISTData:
    """Train and test loaders over in-memory MNIST; what ``fit`` and ``evaluate`` take."""

    train: TensorLoader
    test: TensorLoader

    @property
    def test_images(self) -> torch.Tensor:
        """The raw uint8 test images (for plots of misclassified examples)."""
        return self.test.images


def mnist_data(batch_size: int = 128, *, rotation: float = 0.0, translate: float = 0.0, scale: float = 0.0,
               seed: int = 0, test_batch_size: int = 2000, channels_last: bool = True,
               root=None, device: str | torch.device = "cpu", tensors=None) -> MNISTData:
    """Provision MNIST (verified) and wrap it in train/test :class:`TensorLoader` objects.

    ``tensors`` may pass ``(x_train, y_train, x_test, y_test)`` already loaded, to skip the disk.
    """
    xtr, ytr, xte, yte = tensors if tensors is not None else load_uint8(root)
    train = TensorLoader(xtr, ytr, batch_size, shuffle=True, rotation=rotation, translate=translate,
                         scale=scale, seed=seed, channels_last=channels_last, device=device)
    test = TensorLoader(xte, yte, test_batch_size, shuffle=False, channels_last=channels_last, device=device)
    return MNISTData(train, test)


def data_for(config, **kwargs) -> MNISTData:
    """:func:`mnist_data` with the batch size, augmentation and seed of a ``TrainConfig``."""
    return mnist_data(config.batch_size, rotation=config.rotation, translate=config.translate,
                      scale=config.scale, seed=config.seed, test_batch_size=config.test_batch_size,
                      channels_last=config.channels_last, **kwargs)
