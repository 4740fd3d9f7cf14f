from .align import FeatureAlign, LargeKernelAttention
from .fusion import FeatureFusion
from .select import ConvMamba
from .selective_scan import (selective_scan_fn, selective_scan_fused,
                             selective_scan_ref, selective_scan_torch)

__all__ = [
    'LargeKernelAttention', 'FeatureAlign', 'ConvMamba', 'FeatureFusion',
    'selective_scan_fn', 'selective_scan_ref', 'selective_scan_torch',
    'selective_scan_fused'
]
