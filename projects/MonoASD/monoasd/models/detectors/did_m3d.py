# Copyright (c) MonoASD contributors. All rights reserved.
"""DID-M3D monocular detector with a configurable input modality."""
from typing import Dict, Optional, Tuple

from mmdet3d.models.detectors import SingleStageMono3DDetector
from mmdet3d.registry import MODELS
from mmdet3d.structures.det3d_data_sample import SampleList
from torch import Tensor

from ..utils.dla import freeze_dead_dla_projections
from ..utils.finite_loss import FiniteLossMixin

#: Input keys produced by :class:`MonoDepthDataPreprocessor`.
INPUT_KEYS = ('imgs', 'depth_imgs')


@MODELS.register_module()
class DIDM3D(FiniteLossMixin, SingleStageMono3DDetector):
    """DID-M3D: DLA-34 backbone, DLA-Up neck and :class:`DIDM3DHead`.

    The same class is the RGB student and the depth teacher; only
    ``input_key`` differs (design P4): ``'imgs'`` (normalised RGB) or
    ``'depth_imgs'`` (the teacher's 3-channel depth input).

    Args:
        backbone (dict): Backbone config (mmdet3d ``DLANet``).
        neck (dict): Neck config (:class:`DLAUp`), returning the four fused
            maps finest first.
        bbox_head (dict): Head config (:class:`DIDM3DHead`).
        input_key (str): Which input the backbone reads. Defaults to 'imgs'.
        train_cfg, test_cfg (dict, optional): Unused, kept for mmdet3d.
        data_preprocessor (dict, optional): Preprocessor config.
        init_cfg (dict, optional): Initialisation config.

    A non-finite loss stops training with an error naming the term and the
    iteration (:class:`FiniteLossMixin`).
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 bbox_head: dict,
                 input_key: str = 'imgs',
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            bbox_head=bbox_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        if input_key not in INPUT_KEYS:
            raise ValueError(f'input_key must be one of {INPUT_KEYS}, got '
                             f'{input_key!r}')
        self.input_key = input_key
        # DDP runs without find_unused_parameters (models/utils/dla.py)
        freeze_dead_dla_projections(self)

    def extract_feat(self, batch_inputs_dict: Dict[str,
                                                   Tensor]) -> Tuple[Tensor]:
        """Backbone + neck on ``batch_inputs_dict[input_key]``.

        Returns:
            tuple[Tensor]: Four fused maps, finest first: (B, 64, H/4, W/4),
            (B, 128, H/8, W/8), (B, 256, H/16, W/16), (B, 512, H/32, W/32).
        """
        if self.input_key not in batch_inputs_dict:
            raise KeyError(
                f'{type(self).__name__} reads inputs["{self.input_key}"], '
                f'which the batch lacks (has {sorted(batch_inputs_dict)}); '
                'the depth input needs LoadDenseDepth in the pipeline and '
                'MonoDepthDataPreprocessor')
        x = self.backbone(batch_inputs_dict[self.input_key])
        return self.neck(x)

    def predict(self, batch_inputs_dict: Dict[str, Tensor],
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Detect and attach ``pred_instances_3d``/``pred_instances`` (the
        head returns both, as in mmdet3d's ``FCOSMono3D``)."""
        feats = self.extract_feat(batch_inputs_dict)
        results_3d, results_2d = self.bbox_head.predict(
            feats, batch_data_samples, rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results_3d,
                                           results_2d)


@MODELS.register_module()
class StudentDetector(DIDM3D):
    """DID-M3D reading RGB (``input_key='imgs'``); see :class:`DIDM3D`."""

    def __init__(self, *args, input_key: str = 'imgs', **kwargs) -> None:
        super().__init__(*args, input_key=input_key, **kwargs)


@MODELS.register_module()
class TeacherDetector(DIDM3D):
    """DID-M3D reading the dense depth input (``input_key='depth_imgs'``).
    """

    def __init__(self,
                 *args,
                 input_key: str = 'depth_imgs',
                 **kwargs) -> None:
        super().__init__(*args, input_key=input_key, **kwargs)
