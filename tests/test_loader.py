"""The in-memory pipeline: batching, shuffling, normalisation and batched augmentation."""
from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from course_utils.data import MNIST_MEAN, MNIST_STD
from course_utils.loader import TensorLoader, affine, mnist_data, random_affine

BILINEAR = InterpolationMode.BILINEAR


@pytest.mark.parametrize("angle,translate,scale", [(90.0, (0, 0), 1.0), (15.0, (0, 0), 1.0), (-7.0, (0, 0), 1.0),
                                                   (0.0, (3, -2), 1.0), (10.0, (1, 2), 1.1)])
def test_affine_matches_torchvision_per_image(angle, translate, scale):
    """The batched transform equals torchvision's per-image ``affine`` (the trusted reference;
    its ``affine`` angle is clockwise, ``rotate``'s and ours counter-clockwise)."""
    x = torch.rand(3, 1, 28, 28)
    n = len(x)
    out = affine(x, torch.full((n,), angle), torch.full((n,), scale), torch.full((n,), translate[0] / 28),
                 torch.full((n,), translate[1] / 28))
    ref = TF.affine(x, angle=-angle, translate=list(translate), scale=scale, shear=[0.0], interpolation=BILINEAR)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_affine_is_independent_per_image():
    x = torch.rand(2, 1, 28, 28)
    out = affine(x, torch.tensor([0.0, 90.0]), torch.ones(2), torch.zeros(2), torch.zeros(2))
    torch.testing.assert_close(out[0], x[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], TF.rotate(x[1:], 90.0)[0], atol=1e-5, rtol=0)


def test_random_affine_keeps_shape_dtype_and_rejects_non_batches():
    x = torch.rand(64, 1, 28, 28)
    y = random_affine(x, degrees=7, translate=0.1, scale=0.1, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not torch.equal(x, y)
    assert random_affine(x) is x  # no augmentation asked: untouched
    with pytest.raises(ValueError, match="batch"):
        random_affine(torch.rand(28, 28), degrees=5)


def test_augmented_digits_stay_recognisable_and_labels_aligned(mnist_tensors):
    """A 7-degree rotation barely moves an image: each augmented image is still closest to its
    own original among the batch, so images and labels stay paired."""
    xtr, ytr, _, _ = mnist_tensors
    plain = TensorLoader(xtr[:256], ytr[:256], 256)
    aug = TensorLoader(xtr[:256], ytr[:256], 256, rotation=7.0, seed=3)
    (xp, yp), (xa, ya) = next(iter(plain)), next(iter(aug))
    assert torch.equal(yp, ya)
    d = torch.cdist(xa.flatten(1), xp.flatten(1))
    assert (d.argmin(1) == torch.arange(256)).float().mean() > 0.95


def test_batches_cover_each_image_once_and_shuffle_reproducibly():
    x = torch.arange(1000, dtype=torch.int64).remainder(256).to(torch.uint8).view(1000, 1, 1).expand(1000, 28, 28)
    y = torch.arange(1000)
    loader = TensorLoader(x.contiguous(), y, 128, shuffle=True, seed=7)
    assert len(loader) == 8
    seen = torch.cat([yb for _, yb in loader])
    assert sorted(seen.tolist()) == list(range(1000))
    assert seen.tolist() != list(range(1000))
    again = torch.cat([yb for _, yb in TensorLoader(x.contiguous(), y, 128, shuffle=True, seed=7)])
    assert torch.equal(seen, again)
    second_epoch = torch.cat([yb for _, yb in loader])
    assert not torch.equal(seen, second_epoch)
    assert len(TensorLoader(x.contiguous(), y, 128, drop_last=True)) == 7


def test_batches_are_normalised_images_in_channels_last(mnist_tensors):
    xtr, ytr, _, _ = mnist_tensors
    xb, yb = next(iter(TensorLoader(xtr, ytr, 4096, channels_last=True)))
    assert xb.shape == (4096, 1, 28, 28) and xb.dtype == torch.float32
    assert xb.is_contiguous(memory_format=torch.channels_last)
    assert abs(xb.mean().item()) < 0.05 and abs(xb.std().item() - 1) < 0.05
    torch.testing.assert_close(xb[0, 0], (xtr[0].float() / 255 - MNIST_MEAN) / MNIST_STD)
    assert torch.equal(yb, ytr[:4096])


def test_loader_rejects_bad_input():
    with pytest.raises(ValueError, match="labels"):
        TensorLoader(torch.zeros(5, 28, 28, dtype=torch.uint8), torch.zeros(4), 2)
    with pytest.raises(TypeError, match="uint8"):
        TensorLoader(torch.zeros(5, 28, 28), torch.zeros(5), 2)


def test_mnist_data_splits(mnist_tensors):
    data = mnist_data(128, tensors=mnist_tensors)
    assert len(data.train) == 469 and len(data.test.images) == 10000
    assert data.train.shuffle and not data.test.shuffle and not data.test.augments
