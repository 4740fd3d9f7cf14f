"""Fusion of a feature map with its aligned and selected versions."""
import torch
from mmdet3d.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class FeatureFusion(nn.Module):
    """CBR fusion with a residual, as in MonoASD's align-select module.

    ``out = GELU(BN(Conv3x3(cat[X, A, Sel]))) + X``: a 3x3 conv (3C -> C,
    bias, padding 1), BatchNorm and exact (erf) GELU over the concatenation
    of the input map, its aligned map and its selected map, added to the
    input map. The three layers sit in ``self.sq`` as in the reference's
    ``CBR``, so its weights load by name.

    Args:
        dim (int): Channels C of each of the three maps.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.sq = nn.Sequential(
            nn.Conv2d(3 * dim, dim, 3, padding=1, bias=True),
            nn.BatchNorm2d(dim), nn.GELU(approximate='none'))

    def forward(self, feat: Tensor, aligned: Tensor,
                selected: Tensor) -> Tensor:
        """Fuse the three maps.

        Args:
            feat (Tensor): Input map X, shape (B, C, H, W).
            aligned (Tensor): Aligned map A, shape (B, C, H, W).
            selected (Tensor): Selected map Sel, shape (B, C, H, W), or the
                select module's channel-first output (B, C, H*W) in raster
                order, which is reshaped to (B, C, H, W).

        Returns:
            Tensor: Fused map, shape (B, C, H, W).
        """
        if selected.shape[:2] != feat.shape[:2] or \
                selected[0, 0].numel() != feat[0, 0].numel():
            raise ValueError('selected must be (B, C, H, W) or (B, C, H*W) '
                             f'for feat {tuple(feat.shape)}, got '
                             f'{tuple(selected.shape)}.')
        selected = selected.reshape(feat.shape)
        return self.sq(torch.cat([feat, aligned, selected], dim=1)) + feat
