"""Image reading and the preprocessing every model input goes through."""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError


MAX_ASPECT = 4  # resize-then-crop up to this aspect ratio; crop first beyond it (bounded memory)


def gray_to_unit_rgb(images) -> torch.Tensor:
    """uint8 [N, H, W] -> float32 [N, 3, H, W] in [0, 1], the gray channel repeated (a VAE's
    RGB input)."""
    x = torch.as_tensor(np.asarray(images))
    if x.ndim != 3 or x.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 [N, H, W], got {x.dtype} {tuple(x.shape)}")
    return x.float().div(255)[:, None].expand(-1, 3, -1, -1).contiguous()


def to_uint8_gray(images) -> np.ndarray:
    """Tensor/array [N, C, H, W] or [N, H, W] in [0, 1] -> uint8[N, H, W]: the channel mean,
    clipped and rounded as a PNG writer would."""
    x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images, np.float32))
    x = x.float()
    if x.ndim == 4:
        x = x.mean(1)
    if x.ndim != 3:
        raise ValueError(f"images must be [N, C, H, W] or [N, H, W], got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or inf")
    return x.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()


class ImageReadError(OSError):
    """An image file is missing, truncated or not an image; names the file."""


def read_image(path: str) -> np.ndarray:
    """Any mode and bit depth -> float32[H, W] (grayscale) or float32[H, W, 3] in [0, 1]."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(im, dtype=np.float32) / 65535.0
            if mode == "I":  # how PIL opens 16-bit PGM and TIFF: scaled by the 16-bit depth, never guessed from the values
                arr = np.asarray(im, dtype=np.float32)
                if arr.size and (arr.min() < 0 or arr.max() > 65535):
                    raise ValueError(f"32-bit integer pixel values outside the 16-bit range [0, 65535] (min {arr.min():.0f}, max {arr.max():.0f})")
                return arr / 65535.0
            if mode == "F":  # floating point: must already be in [0, 1]
                arr = np.asarray(im, dtype=np.float32)
                if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1):
                    raise ValueError("floating-point pixel values must be finite and in [0, 1]")
                return arr
            if mode in ("1", "L", "P", "LA"):
                return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except FileNotFoundError as exc:
        raise ImageReadError(f"image not found: {path}") from exc
    except Image.DecompressionBombError as exc:  # a few hundred KB that would decode to GBs
        raise ImageReadError(f"cannot read image {path}: refused as a decompression bomb ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc


def to_model_input(img: np.ndarray, size: int, channels: int, value_range=(-1.0, 1.0)) -> torch.Tensor:
    """float[H, W] or float[H, W, 3] in [0, 1] -> Tensor[channels, size, size].

    Shorter side resized to ``size`` (antialiased bilinear), centre crop, values mapped to
    ``value_range`` (Stable Diffusion's VAE takes [-1, 1]). Beyond ``MAX_ASPECT`` : 1 the
    centred square is taken before resizing (the same crop, without a huge intermediate)."""
    t = torch.from_numpy(np.ascontiguousarray(img))
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    if channels == 1 and t.shape[0] == 3:
        t = (0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2])[None]
    elif channels == 3 and t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    elif channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    h, w = t.shape[-2:]
    if max(h, w) > MAX_ASPECT * min(h, w):
        # extreme aspect ratio (a 1 x 100000 strip): resizing the short side first would
        # allocate size x (size * aspect) floats; take the centred square first, so memory is
        # bounded by the image and size^2 whatever the shape
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        t = t[:, top : top + s, left : left + s]
        h, w = s, s
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        t = F.interpolate(t[None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
        top, left = (nh - size) // 2, (nw - size) // 2
        t = t[:, top : top + size, left : left + size]
    lo, hi = value_range
    return (t.clamp(0, 1) * (hi - lo) + lo).contiguous()
