# Copyright (c) MonoASD contributors. All rights reserved.
"""MonoASD's Align-and-Select distiller (design D5)."""
import logging
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union  # noqa: F401

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmengine.runner.checkpoint import CheckpointLoader
from mmdet3d.registry import MODELS
from mmdet3d.structures.det3d_data_sample import SampleList
from torch import Tensor

from ..dense_heads.distillable_head import DistillableHeadMixin
from ..utils.dla import freeze_dead_dla_projections
from ..utils.finite_loss import FiniteLossMixin


def _adapter(channels: int) -> nn.Sequential:
    """Per-level student adapter: 3x3 conv + ReLU + 1x1 conv (design D5.1)."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 1))


def _tokens(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, H*W, C) in raster order."""
    return x.flatten(2).transpose(1, 2)


@MODELS.register_module()
class AlignSelectDistiller(FiniteLossMixin, BaseModel):
    """Distil a frozen depth teacher into an RGB student (MonoASD).

    Training (:meth:`loss`): teacher forward (no grad) -> student forward ->
    adapt -> align -> select -> fuse -> affinity, align-select and head
    losses. The student's detection heads read its own raw features
    (reference behaviour, quirk Q3). Inference (:meth:`predict`) runs only
    the student (design P5).

    Feature distillation works for any mmdet3d monocular detector whose
    ``extract_feat`` returns a tuple of maps with ``feature_channels``;
    head distillation needs a head with the
    :class:`DistillableHeadMixin` interface (DID-M3D's): another head with
    ``loss_head`` set is refused when the distiller is built.

    Args:
        student (dict): Student detector config.
        teacher (dict, optional): Teacher detector config. Defaults to the
            student's config with ``type='TeacherDetector'`` (same
            architecture reading the depth input, design P4).
        teacher_ckpt (str, optional): Teacher checkpoint, loaded in
            :meth:`init_weights`.
        student_ckpt (str, optional): Student initialisation checkpoint.
        teacher_norm_eval (bool): Keep the teacher in eval mode (frozen BN
            statistics, corrected quirk Q6). Defaults to True.
        teacher_trainable (bool): Let the teacher train. Defaults to False.
        save_teacher (bool): Write the teacher's weights into checkpoints.
            Defaults to False (they come from ``teacher_ckpt``).
        feature_channels (Sequence[int]): Channels of the distilled levels,
            finest first. Defaults to (64, 128, 256, 512).
        align (dict): Per-level align module config; ``dim`` is filled in.
        select (dict): Per-level select module config; ``d_model`` is
            filled in. One is built for each side.
        fusion (dict): Per-level fusion config; ``dim`` is filled in.
        teacher_input_key (str, optional): Feed ``inputs[key]`` to the
            teacher as its ``'imgs'``, so that any mmdet3d monocular
            detector (which reads ``'imgs'``) can be a depth teacher, e.g.
            ``'depth_imgs'``. Defaults to None (the teacher picks its input,
            as :class:`TeacherDetector` does).
        teacher_fusion (str): ``'cbr'`` (reference: a teacher-side fusion
            CBR that receives no gradient, quirk Q7) or ``'identity'``
            (corrected option (a): the affinity target is the teacher's raw
            map).
        loss_align_select (dict): :class:`AlignSelectLoss` config.
        loss_affinity (dict): :class:`AffinityLoss` config.
        loss_head (dict, optional): Head distillation config; None disables.
        data_preprocessor (dict, optional): Defaults to the student's.
        init_cfg (dict, optional): Initialisation config.

    Attributes:
        distill_scale (float): Factor on every ``distill.*`` loss, 1.0 by
            default; :class:`DistillWarmupHook` ramps it up from 0 at the
            start of training.
    """

    def __init__(self,
                 student: dict,
                 teacher: Optional[dict] = None,
                 teacher_ckpt: Optional[str] = None,
                 student_ckpt: Optional[str] = None,
                 teacher_norm_eval: bool = True,
                 teacher_trainable: bool = False,
                 save_teacher: bool = False,
                 feature_channels: Sequence[int] = (64, 128, 256, 512),
                 align: dict = dict(type='FeatureAlign'),
                 select: dict = dict(type='ConvMamba'),
                 fusion: dict = dict(type='FeatureFusion'),
                 teacher_input_key: Optional[str] = None,
                 teacher_fusion: str = 'cbr',
                 loss_align_select: dict = dict(type='AlignSelectLoss'),
                 loss_affinity: dict = dict(type='AffinityLoss'),
                 loss_head: Optional[dict] = dict(type='DIDHeadDistillLoss'),
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = student.get('data_preprocessor')
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if teacher_fusion not in ('cbr', 'identity'):
            raise ValueError("teacher_fusion must be 'cbr' or 'identity', "
                             f'got {teacher_fusion!r}')
        if teacher is None:
            teacher = dict(student, type='TeacherDetector')
        self.student = MODELS.build(student)
        self.teacher = MODELS.build(teacher)
        self.distill_scale = 1.0
        self.teacher_ckpt = teacher_ckpt
        self.student_ckpt = student_ckpt
        self.teacher_norm_eval = teacher_norm_eval
        self.teacher_trainable = teacher_trainable
        self.save_teacher = save_teacher
        self.teacher_fusion = teacher_fusion
        self.teacher_input_key = teacher_input_key
        if not teacher_trainable:
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        # also for students that are not DIDM3D (SMOKE): models/utils/dla.py
        freeze_dead_dla_projections(self)

        chans = tuple(feature_channels)
        self.feature_channels = chans
        self.adapters = nn.ModuleList(_adapter(c) for c in chans)
        self.aligns = nn.ModuleList(
            MODELS.build(dict(align, dim=c)) for c in chans)
        self.selects_s = nn.ModuleList(
            MODELS.build(dict(select, d_model=c)) for c in chans)
        self.selects_t = nn.ModuleList(
            MODELS.build(dict(select, d_model=c)) for c in chans)
        self.fusions_s = nn.ModuleList(
            MODELS.build(dict(fusion, dim=c)) for c in chans)
        self.fusions_t = nn.ModuleList(
            MODELS.build(dict(fusion, dim=c))
            for c in chans) if teacher_fusion == 'cbr' else None
        if self.fusions_t is not None:
            # it never gets a gradient (quirk Q7), so the optimizer never
            # changed it; frozen, DDP need not look for unused parameters
            self.fusions_t.requires_grad_(False)
        self.loss_align_select = MODELS.build(loss_align_select)
        self.loss_affinity = MODELS.build(loss_affinity)
        self.loss_head = MODELS.build(loss_head) if loss_head else None
        s_head = getattr(self.student, 'bbox_head', None)
        if self.loss_head is not None and not isinstance(
                s_head, DistillableHeadMixin):
            raise ValueError(
                f'loss_head={loss_head!r} needs a student head with the '
                'DistillableHeadMixin interface (get_targets/forward_train/'
                f'loss_by_feat); {type(s_head).__name__} has none: set '
                'loss_head=None for feature distillation only')
        self._register_load_state_dict_pre_hook(self._fill_teacher_keys)

    # ------------------------------------------------------------ weights
    def init_weights(self) -> None:
        """Initialise, then load the teacher (and student) checkpoints."""
        super().init_weights()
        for name, ckpt in (('teacher', self.teacher_ckpt),
                           ('student', self.student_ckpt)):
            if ckpt:
                self._load_side(name, ckpt)
        if self.teacher_ckpt is None and not self.teacher_trainable:
            print_log(
                'AlignSelectDistiller has no teacher_ckpt: the frozen '
                'teacher keeps its initial weights', 'current',
                level=logging.WARNING)

    def _load_side(self, name: str, ckpt: str) -> None:
        """Load ``teacher_ckpt``/``student_ckpt`` strictly, with checks.

        Refuses a file that does not exist, one whose keys or shapes do not
        fit the network, and one recorded (``meta['input_key']``, written by
        :class:`ModalityMetaHook`) as reading another input than this side.
        """
        model = getattr(self, name)
        if not osp.isfile(osp.expanduser(ckpt)):
            raise FileNotFoundError(
                f'model.{name}_ckpt={ckpt!r} does not exist: train the '
                f'{name} first (tools/train.py with its config) or fix the '
                'path')
        state = CheckpointLoader.load_checkpoint(ckpt, map_location='cpu')
        meta = state.get('meta', {}) if isinstance(state, dict) else {}
        found = meta.get('input_key') if isinstance(meta, dict) else None
        # a teacher fed through teacher_input_key reads 'imgs' by design
        expected = None if name == 'teacher' and \
            self.teacher_input_key is not None else getattr(
                model, 'input_key', None)
        if found is not None and expected is not None and found != expected:
            raise ValueError(
                f'model.{name}_ckpt={ckpt!r} was trained reading '
                f'inputs[{found!r}], but the {name} reads '
                f'inputs[{expected!r}]: '
                + ('an RGB checkpoint cannot be the depth teacher; give the '
                   'teacher config\'s checkpoint' if name == 'teacher' else
                   'give the RGB baseline checkpoint'))
        if found is None:
            print_log(f'{name}_ckpt {ckpt} records no input modality '
                      '(meta["input_key"]); not checked', 'current',
                      level=logging.WARNING)
        weights = state.get('state_dict', state)
        weights = {k[len('module.'):] if k.startswith('module.') else k: v
                   for k, v in weights.items()}
        own = model.state_dict()
        missing = sorted(set(own) - set(weights))
        unexpected = sorted(set(weights) - set(own))
        shapes = [f'{k}: checkpoint {tuple(weights[k].shape)} vs model '
                  f'{tuple(own[k].shape)}' for k in own
                  if k in weights and hasattr(weights[k], 'shape')
                  and tuple(weights[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or shapes:
            def some(keys):
                return ', '.join(keys[:8]) + (' ...' if len(keys) > 8 else '')
            raise ValueError(
                f'model.{name}_ckpt={ckpt!r} does not fit the {name} '
                f'({type(model).__name__}): {len(missing)} missing keys '
                f'[{some(missing)}], {len(unexpected)} unexpected keys '
                f'[{some(unexpected)}], {len(shapes)} shape mismatches '
                f'[{some(shapes)}]. Is it a checkpoint of another '
                'architecture or a distiller checkpoint (export it with '
                'tools/export_student.py)?')
        model.load_state_dict(weights, strict=True)
        print_log(f'loaded {name} weights from {ckpt}', 'current')

    def state_dict(self, *args, **kwargs) -> Dict[str, Tensor]:
        """State dict without the teacher unless ``save_teacher``."""
        state = super().state_dict(*args, **kwargs)
        if self.save_teacher:
            return state
        prefix = kwargs.get('prefix', args[1] if len(args) > 1 else '')
        for key in [k for k in state if k.startswith(prefix + 'teacher.')]:
            del state[key]
        return state

    def _fill_teacher_keys(self, state_dict, prefix, *args) -> None:
        """Use the current teacher weights for keys the checkpoint lacks."""
        for key, value in self.teacher.state_dict().items():
            full = f'{prefix}teacher.{key}'
            if full not in state_dict:
                state_dict[full] = value

    def train(self, mode: bool = True) -> 'AlignSelectDistiller':
        """Set training mode; the teacher stays in eval with
        ``teacher_norm_eval``."""
        super().train(mode)
        if self.teacher_norm_eval:
            self.teacher.eval()
        return self

    # ------------------------------------------------------------ forward
    def forward(self,
                inputs: Dict[str, Tensor],
                data_samples: Optional[SampleList] = None,
                mode: str = 'tensor'):
        """Dispatch to :meth:`loss`, :meth:`predict` or :meth:`_forward`."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}"')

    def _forward(self, inputs, data_samples=None):
        return self.student._forward(inputs, data_samples)

    def predict(self, inputs: Dict[str, Tensor],
                data_samples: SampleList) -> SampleList:
        """Inference with the student alone."""
        return self.student.predict(inputs, data_samples)

    def distill_features(self, s_feats: Sequence[Tensor],
                         t_feats: Sequence[Tensor]) -> Dict[str, Tensor]:
        """Adapt, align, select and fuse; return the feature losses.

        Args:
            s_feats (Sequence[Tensor]): Student maps, finest first.
            t_feats (Sequence[Tensor]): Teacher maps, same shapes.

        Returns:
            dict: ``loss_align_select`` and ``loss_affinity``.
        """
        if len(s_feats) != len(self.feature_channels) or \
                len(t_feats) != len(s_feats):
            raise ValueError(
                f'distiller expects {len(self.feature_channels)} feature '
                f'levels, got {len(s_feats)} (student) and {len(t_feats)} '
                '(teacher); set feature_channels')
        adapted = [a(s) for a, s in zip(self.adapters, s_feats)]
        teacher = [t.detach() for t in t_feats]
        aligned_s: List[Tensor] = []
        aligned_t: List[Tensor] = []
        for align, s, t in zip(self.aligns, adapted, teacher):
            a_s, a_t = align(s, t)
            aligned_s.append(a_s)
            aligned_t.append(a_t)
        # select runs on the un-aligned maps; outputs are (B, C, L)
        sel_s = [m(_tokens(s)).transpose(1, 2)
                 for m, s in zip(self.selects_s, adapted)]
        sel_t = [m(_tokens(t)).transpose(1, 2)
                 for m, t in zip(self.selects_t, teacher)]
        fused_s = [f(s, a, sel) for f, s, a, sel in zip(
            self.fusions_s, adapted, aligned_s, sel_s)]
        if self.fusions_t is not None:
            # the affinity loss detaches its teacher side, so the teacher
            # fusion gets no gradient (quirk Q7): no graph is built for it
            with torch.no_grad():
                fused_t = [f(t, a, sel) for f, t, a, sel in zip(
                    self.fusions_t, teacher, aligned_t, sel_t)]
        else:
            fused_t = teacher
        return dict(
            loss_align_select=self.loss_align_select(aligned_s, aligned_t,
                                                     sel_s, sel_t),
            loss_affinity=self.loss_affinity(fused_s, fused_t))

    def loss(self, inputs: Dict[str, Tensor],
             data_samples: SampleList) -> Dict[str, Tensor]:
        """Student detection losses plus ``distill.loss_*`` terms."""
        t_inputs = inputs
        if self.teacher_input_key is not None:
            t_inputs = dict(inputs, imgs=inputs[self.teacher_input_key])
        with torch.set_grad_enabled(self.teacher_trainable):
            t_feats = self.teacher.extract_feat(t_inputs)
        s_feats = self.student.extract_feat(inputs)
        s_head, t_head = self.student.bbox_head, self.teacher.bbox_head
        # a distillable head's losses come from the same targets as the
        # head distillation (DistillableHeadMixin)
        did_head = isinstance(s_head, DistillableHeadMixin)
        does_head_kd = self.loss_head is not None

        if did_head:
            targets = s_head.get_targets(data_samples, s_feats[0].shape[-2:],
                                         with_response_mask=does_head_kd)
            s_out = s_head.forward_train(s_feats[0], targets)
            losses = s_head.loss_by_feat(s_out, targets)
        else:  # any mmdet3d dense head: loss(x, batch_data_samples)
            losses = s_head.loss(s_feats, data_samples)
        if does_head_kd:
            with torch.set_grad_enabled(self.teacher_trainable):
                t_out = t_head.forward_train(t_feats[0], targets)

        scale = float(self.distill_scale)
        for name, value in self.distill_features(s_feats, t_feats).items():
            losses[f'distill.{name}'] = value * scale
        if does_head_kd:
            for name, value in self.loss_head(s_out, t_out, targets).items():
                losses[f'distill.loss_head_{name}'] = value * scale
        return losses

    def extract_feat(self, inputs: Dict[str, Tensor]) -> Union[tuple, list]:
        """Student features (what is deployed)."""
        return self.student.extract_feat(inputs)
