"""Vision Transformer (Dosovitskiy et al. 2021) for small images."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .common import check_input

MAX_AUTO_TOKENS = 64


def auto_patch_size(height: int, width: int, max_tokens: int = MAX_AUTO_TOKENS) -> int:
    """Smallest patch size >= 2 dividing both sides that yields at most ``max_tokens``
    patches (8x8 -> 2, 28x28 -> 4, 32x32 -> 4).

    Attention cost grows with the square of the token count, so this keeps the
    default ViT as cheap as the CNNs on every supported dataset.
    """
    side = min(height, width)
    divisors = [p for p in range(2, side + 1) if height % p == 0 and width % p == 0]
    for p in divisors:
        if (height // p) * (width // p) <= max_tokens:
            return p
    return divisors[-1] if divisors else 1


class ViT(nn.Module):
    """Patch embedding (strided conv) + class token + learned positions, ``depth``
    pre-norm ``nn.TransformerEncoderLayer``s, and a linear head on the class token.

    ``patch_size=None`` picks one with :func:`auto_patch_size`; an explicit one must
    divide the image height and width.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        patch_size: int | None = None,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        c, h, w = check_input(input_shape, num_classes)
        if dim < 1 or depth < 1 or heads < 1 or dim % heads:
            raise ValueError(
                f"vit needs dim, depth, heads >= 1 with dim divisible by heads, got "
                f"{dim=}, {depth=}, {heads=}"
            )
        if mlp_ratio <= 0:
            raise ValueError(f"vit needs mlp_ratio > 0, got {mlp_ratio}")
        patch = auto_patch_size(h, w) if patch_size is None else int(patch_size)
        if patch < 1 or h % patch or w % patch:
            raise ValueError(f"vit patch_size {patch_size} must divide the {h}x{w} input")
        self.patch_size = patch
        tokens = (h // patch) * (w // patch)
        self.embed = nn.Conv2d(c, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.encoder = nn.Sequential(
            *(
                nn.TransformerEncoderLayer(
                    dim,
                    heads,
                    dim_feedforward=max(1, round(dim * mlp_ratio)),
                    dropout=0.0,
                    activation="gelu",
                    batch_first=True,
                    norm_first=True,
                )
                for _ in range(depth)
            )
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # (N, patches, dim)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        return self.head(self.norm(self.encoder(tokens)[:, 0]))
