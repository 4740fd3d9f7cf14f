from .affinity_loss import AffinityLoss
from .align_select_loss import AlignSelectLoss, channel_standardize
from .did_losses import (HeadingBinLoss, LaplacianAleatoricLoss,
                         laplacian_aleatoric_loss)
from .head_distill_loss import DIDHeadDistillLoss

__all__ = [
    'LaplacianAleatoricLoss', 'HeadingBinLoss', 'laplacian_aleatoric_loss',
    'AlignSelectLoss', 'channel_standardize', 'AffinityLoss',
    'DIDHeadDistillLoss'
]
