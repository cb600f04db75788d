"""Session 2 reference networks and their training configs.

``SeedNet`` is the course documents' final Session 2 network, unchanged (9,920 parameters):
conv blocks Conv -> ReLU -> BN -> Dropout(0.05), a 1x1 transition and max-pool after receptive
field 5, global average pooling and a 1x1 conv to 10 classes; no bias, no fully connected layer.

``Session2Net`` is the Session 2 reference solution (9,904 parameters), iteration 3's layout with
batch norm and channel-wise dropout (``Dropout2d``: element-wise dropout's mask generation cost ~40%
of a training step on this CPU): three 3x3 convs before the max-pool (8, 12, 16 channels, pool at
RF 7), three 16-channel 3x3 convs after it, global average pooling, a 1x1 conv to 10 classes. Why
this layout (measured against the documents' one): RESULTS.md, "Design measurements".

``SpeedNet`` is iteration 5, beyond the documents: no conv runs on the 28x28 image. Its first conv (1 -> 16
channels) has stride 2, so it computes a 14x14 map; four 16-channel 3x3 convs follow (two padded at 14x14, a
max-pool, two at 7x7 and 5x5), then global average pooling and a 1x1 conv: 9,680 parameters, every batch
norm 16 channels wide; trained with ``SPEED_CONFIG`` (a higher OneCycle peak, label smoothing, small shifts,
weight decay, and a moving average of the weights, warmed up, as the network that is tested and graded).
``PooledNet`` (iteration 4's six convs pooled after the first) and ``SpaceToDepthNet`` are its earlier
designs. Measurements: RESULTS.md, "Speed".
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from course_utils.config import TrainConfig


def conv_block(c_in: int, c_out: int, *, padding: int = 0, stride: int = 1, dropout: float = 0.05,
               channelwise: bool = True, inplace: bool = True):
    """3x3 conv (no bias: BN follows) -> ReLU -> BatchNorm -> Dropout (none for ``dropout=0``).

    The ReLU works in place (the conv's backward does not need its output): one activation-sized
    copy less per block (the measured gain: RESULTS.md, "Design measurements")."""
    drop = [] if not dropout else [nn.Dropout2d(dropout) if channelwise else nn.Dropout(dropout)]
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=padding, bias=False), nn.ReLU(inplace=inplace),
                         nn.BatchNorm2d(c_out), *drop)


class SeedNet(nn.Module):
    """The documents' 9,920-parameter network (element-wise dropout), output log-probabilities."""

    def __init__(self, dropout: float = 0.05):
        super().__init__()
        kw = dict(dropout=dropout, channelwise=False, inplace=False)  # as the documents wrote it
        self.features = nn.Sequential(
            conv_block(1, 16, **kw),    # 26x26, RF 3
            conv_block(16, 16, **kw),   # 24x24, RF 5
            nn.Conv2d(16, 16, 1, bias=False), nn.ReLU(),           # 24x24, transition
            nn.MaxPool2d(2),                                       # 12x12, RF 6
            conv_block(16, 16, **kw),   # 10x10, RF 10
            conv_block(16, 16, **kw),   # 8x8,   RF 14
            conv_block(16, 10, **kw),   # 6x6,   RF 18
            conv_block(10, 10, padding=1, **kw),  # 6x6, RF 22
            nn.AvgPool2d(6),                                       # 1x1 (global average pooling)
            nn.Conv2d(10, 10, 1, bias=False),                      # 10 class scores, no ReLU/BN after
        )

    def forward(self, x):
        return F.log_softmax(self.features(x).flatten(1), dim=1)


class Session2Net(nn.Module):
    """The Session 2 reference solution: 9,904 parameters, output log-probabilities."""

    def __init__(self, dropout: float = 0.05):
        super().__init__()
        self.features = nn.Sequential(
            conv_block(1, 8, dropout=dropout),     # 26x26, RF 3
            conv_block(8, 12, dropout=dropout),    # 24x24, RF 5
            conv_block(12, 16, dropout=dropout),   # 22x22, RF 7
            nn.MaxPool2d(2),                       # 11x11, RF 8
            conv_block(16, 16, dropout=dropout),   # 9x9,   RF 12
            conv_block(16, 16, dropout=dropout),   # 7x7,   RF 16
            conv_block(16, 16, dropout=dropout),   # 5x5,   RF 20
            nn.AdaptiveAvgPool2d(1),               # 1x1 (global average pooling)
            nn.Conv2d(16, 10, 1, bias=False),      # 10 class scores, no ReLU/BN after
        )

    def forward(self, x):
        return F.log_softmax(self.features(x).flatten(1), dim=1)


class _LayoutNet(nn.Module):
    """A network whose layout is written once, as ``layers(block, widths)``: built here with ``conv_block`` (and
    ``dropout``), and by Session 3 with its BN / GBN block. Output log-probabilities."""

    WIDTHS: tuple = ()

    def __init__(self, widths=None, dropout: float = 0.0):
        super().__init__()
        block = lambda c_in, c_out, **kw: conv_block(c_in, c_out, dropout=dropout, **kw)  # noqa: E731
        self.features = nn.Sequential(*self.layers(block, self.WIDTHS if widths is None else widths))

    @staticmethod
    def layers(block, widths) -> list:
        raise NotImplementedError

    def forward(self, x):
        return F.log_softmax(self.features(x).flatten(1), dim=1)


class SpeedNet(_LayoutNet):
    """Iteration 5: a stride-2 first conv (28x28 -> 14x14), so no conv runs at full resolution; then 16-channel
    3x3 conv blocks, a max-pool, GAP and a 1x1 conv; no dropout. 9,680 parameters with the default widths;
    output log-probabilities."""

    WIDTHS = (16, 16, 16, 16, 16)

    @staticmethod
    def layers(block, widths=WIDTHS) -> list:
        """The layout with ``block(c_in, c_out, padding=..., stride=...)`` as its conv blocks (Session 3 passes
        one with BatchNorm or Ghost BatchNorm)."""
        w = widths
        return [
            block(1, w[0], padding=1, stride=2),  # 14x14, RF 3 (one output per 2 pixels)
            block(w[0], w[1], padding=1),         # 14x14, RF 7
            block(w[1], w[2], padding=1),         # 14x14, RF 11
            nn.MaxPool2d(2),                      # 7x7,   RF 13
            block(w[2], w[3]),                    # 5x5,   RF 21
            block(w[3], w[4]),                    # 3x3,   RF 29
            nn.AdaptiveAvgPool2d(1),              # 1x1 (global average pooling)
            nn.Conv2d(w[4], 10, 1, bias=False),   # 10 class scores, no ReLU/BN after
        ]

class PooledNet(_LayoutNet):
    """Iteration 5's design until 2026-12-07 and Session 3's network: iteration 4's layers (9,904 parameters)
    with its max-pool moved forward, after the first conv, and a second one where iteration 4 had its only
    one; padded convs; no dropout. Output log-probabilities. ``PooledNet(widths)`` is the same layout with
    other widths (``make frontier``)."""

    WIDTHS = (8, 12, 16, 16, 16, 16)

    @staticmethod
    def layers(block, widths=WIDTHS) -> list:
        """The layout with ``block(c_in, c_out, padding=...)`` as its conv blocks (Session 3 passes one with
        BatchNorm or Ghost BatchNorm)."""
        w = widths
        return [
            block(1, w[0], padding=1),     # 28x28, RF 3
            nn.MaxPool2d(2),               # 14x14, RF 4
            block(w[0], w[1], padding=1),  # 14x14, RF 8
            block(w[1], w[2], padding=1),  # 14x14, RF 12
            nn.MaxPool2d(2),               # 7x7,   RF 14
            block(w[2], w[3], padding=1),  # 7x7,   RF 22
            block(w[3], w[4]),             # 5x5,   RF 30
            block(w[4], w[5]),             # 3x3,   RF 38
            nn.AdaptiveAvgPool2d(1),       # 1x1 (global average pooling)
            nn.Conv2d(w[5], 10, 1, bias=False),  # 10 class scores, no ReLU/BN after
        ]


class SpaceToDepthNet(nn.Module):
    """Iteration 5's earlier design (9,800 parameters with the default widths): a space-to-depth stem
    (``pixel_unshuffle(2)``: 1x28x28 -> 4x14x14), 3x3 conv blocks without padding (14 -> 4), global average
    pooling, a 1x1 conv to 10 scores. Faster per epoch than ``SpeedNet``, but it missed the grading rule on
    a seed in ten (RESULTS.md, "Speed"); ``make frontier`` tries it at other widths."""

    WIDTHS = (16, 16, 16, 16, 14)

    def __init__(self, widths=WIDTHS, dropout: float = 0.0):
        super().__init__()
        blocks, c_in = [], 4  # 1x28x28 -> 4x14x14
        for c_out in widths:  # maps 12, 10, 8, 6, 4; receptive field 2 + 4 per block = 22 pixels
            blocks.append(conv_block(c_in, c_out, dropout=dropout))
            c_in = c_out
        self.features = nn.Sequential(nn.PixelUnshuffle(2), *blocks, nn.AdaptiveAvgPool2d(1),
                                      nn.Conv2d(c_in, 10, 1, bias=False))

    def forward(self, x):
        return F.log_softmax(self.features(x).flatten(1), dim=1)


SESSION2_CONFIG = TrainConfig(
    name="s2-4-bn-dropout", epochs=14, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
    scheduler="onecycle", pct_start=0.25, rotation=7.0, channels_last=True, seed=1)

SPEED_CONFIG = TrainConfig(
    name="s2-5-speed", epochs=14, batch_size=128, optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True,
    scheduler="onecycle", pct_start=0.25, rotation=7.0, translate=0.05, label_smoothing=0.1, weight_decay=1e-4,
    ema_decay=0.999, ema_warmup=True, channels_last=True, seed=1)

SEED_CONFIG = TrainConfig(
    name="seed-style", epochs=15, batch_size=64, optimizer="sgd", lr=0.01, momentum=0.9, scheduler="none",
    channels_last=False, notes="The documents' recipe: SGD 0.01, no schedule, no augmentation")
