"""Networks of iterated learning (Sec. 3.1): student encoder S (z -> C' channel logits),
decoder D (sparse code -> z, unbounded output) and classifier C (sparse code -> K logits).

S and D are pix2pix-style U-Nets as in the authors' code (strided-conv downsampling with
batch norm, transposed-conv upsampling, skip connections), with as many levels as the latent
grid allows (up to six). Unlike the authors' decoder, D ends without tanh: SD latents exceed
1 in magnitude and a tanh would clip them."""

import math

import torch
import torch.nn as nn
import torchvision

from ltbench.nets import SmallCNN


class UNetCodec(nn.Module):
    """Tensor[B, in_ch, H, W] -> Tensor[B, out_ch, H, W]; ``depth`` stride-2 levels."""

    def __init__(self, in_ch: int, out_ch: int, ngf: int = 64, depth: int = 6):
        super().__init__()
        chans = [ngf * min(2**i, 8) for i in range(depth)]
        self.inc = nn.Sequential(nn.Conv2d(in_ch, chans[0], 3, padding=1), nn.BatchNorm2d(chans[0]), nn.LeakyReLU(0.2))
        self.downs = nn.ModuleList(nn.Sequential(nn.Conv2d(chans[i], chans[i + 1] if i + 1 < depth else chans[i], 4, 2, 1), nn.BatchNorm2d(chans[i + 1] if i + 1 < depth else chans[i]), nn.LeakyReLU(0.2)) for i in range(depth))
        ups = []
        for i in reversed(range(depth)):
            cin = (chans[i + 1] if i + 1 < depth else chans[i]) * (1 if i == depth - 1 else 2)
            ups.append(nn.Sequential(nn.ConvTranspose2d(cin, chans[i], 4, 2, 1), nn.BatchNorm2d(chans[i]), nn.ReLU()))
        self.ups = nn.ModuleList(ups)
        self.out = nn.Conv2d(chans[0] * 2, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        h = skips[0]
        for down in self.downs:
            h = down(h)
            skips.append(h)
        skips.pop()  # the bottleneck is h itself
        for up in self.ups:
            h = up(h)
            h = torch.cat([h, skips.pop()], 1)
        return self.out(h)


def unet_depth(size: int, max_depth: int = 6) -> int:
    """Levels a ``size`` x ``size`` grid allows (down to 1x1), capped at the authors' six."""
    return max(1, min(max_depth, int(math.log2(size))))


def make_classifier(kind: str, in_ch: int, n_classes: int, size: int) -> nn.Module:
    """``small`` (CPU presets), ``vgg11`` (the authors' default) or ``densenet121``, each with
    its first convolution taking the C' sparse channels."""
    if kind == "small":
        return SmallCNN(in_ch, n_classes, width=32)
    if kind == "vgg11":
        if size < 32:
            raise ValueError(f"vgg11 needs a latent grid of at least 32x32 (five 2x poolings), got {size}x{size}; use classifier='small'")
        net = torchvision.models.vgg11(weights=None, num_classes=n_classes)
        net.features[0] = nn.Conv2d(in_ch, 64, 3, padding=1)
        return net
    if kind == "densenet121":
        if size < 32:
            raise ValueError(f"densenet121 needs a latent grid of at least 32x32, got {size}x{size}; use classifier='small'")
        net = torchvision.models.densenet121(weights=None, num_classes=n_classes)
        net.features.conv0 = nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
        return net
    raise ValueError(f"classifier must be 'small', 'vgg11' or 'densenet121', got {kind!r}")


def cam_layer(classifier: nn.Module) -> nn.Module:
    """The last convolutional block, where a last-block CAM (the paper's EigenCAM) reads the activations."""
    if isinstance(classifier, SmallCNN):
        return classifier.body
    if isinstance(classifier, torchvision.models.VGG):
        return classifier.features
    if isinstance(classifier, torchvision.models.DenseNet):
        return classifier.features.denseblock4
    raise TypeError(f"no CAM layer known for {type(classifier).__name__}")


def cam_layers(classifier: nn.Module, which: str) -> list:
    """Target layers of a CAM: ``last`` = [the last block]; ``multi`` = every block after the
    first, from the finer grids up (the authors take VGG11 ``features[2:-1]``), so the map
    keeps the resolution of the earlier layers (SmallCNN on 16x16: 8x8, 4x4 and 2x2)."""
    if which == "last":
        return [cam_layer(classifier)]
    if which != "multi":
        raise ValueError(f"cam layers must be 'last' or 'multi', got {which!r}")
    if isinstance(classifier, SmallCNN):
        return [m for m in classifier.body if isinstance(m, nn.ReLU)][1:]
    if isinstance(classifier, torchvision.models.VGG):
        return list(classifier.features[2:-1])
    if isinstance(classifier, torchvision.models.DenseNet):
        f = classifier.features
        return [f.denseblock2, f.denseblock3, f.denseblock4]
    raise TypeError(f"no CAM layers known for {type(classifier).__name__}")


def reset_parameters(module: nn.Module) -> None:
    """Re-initialise every layer in place (the fresh student of each generation)."""
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()
