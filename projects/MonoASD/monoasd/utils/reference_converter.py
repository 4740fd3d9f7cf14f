# Copyright (c) MonoASD contributors. All rights reserved.
"""Convert checkpoints of the reference codebases to MonoASD's models.

The reference codebases (DID-M3D, MonoSKD and the MonoASD research code)
save ``{'epoch', 'model_state', 'optimizer_state'}`` with the model's
``state_dict`` under ``model_state``. A detector checkpoint (DID-M3D's
release, MonoSKD's ``rgb_pretrain_car_17.77.pth`` and
``depth_pretrain_car_43.81.pth``, MonoASD's ``student.pth`` and
``teacher.pth``) holds plain DID keys; a distillation checkpoint holds the
RGB student under ``centernet_rgb.``, the depth teacher under
``centernet_depth.`` and the distiller's own modules beside them.

The key map (``docs/model_converters.md`` lists it in full):

* backbone: the reference DLA-34 names its norms ``bn1``/``bn2``/``root.bn``,
  mmdet3d's ``DLANet`` ``norm1``/``norm2``/``root.norm``;
* neck: ``feat_up.ida_k.{proj,up,node}_i`` become
  ``neck.ida_k.{projs,ups,nodes}.{i-1}`` (``conv`` -> ``0``, ``bn`` -> ``1``);
* head: every head keeps its name and Sequential indices under
  ``bbox_head.``; the reference always has three classes
  (Pedestrian, Car, Cyclist): the heatmap's output rows and the class
  one-hot input channels of the seven ROI heads are taken in the order of
  the target ``class_names``. Dropping a one-hot channel is exact: it is
  zero for every class that remains;
* ``mean_size`` becomes ``bbox_head.mean_sizes`` (rows by class);
* distiller: ``adapt_layer{4,8,16,32}`` -> ``adapters.{0..3}``,
  ``compute_align_select_loss.feat_align_i`` -> ``aligns.i``,
  ``conv_ssm_{stu,tea}_i`` -> ``selects_{s,t}.i``, ``conv_{stu,tea}_i`` ->
  ``fusions_{s,t}.i``.

Known-unused keys are dropped with a warning (:data:`KNOWN_UNUSED`); any
other key that does not map, a key of the target model that nothing fills
(except HTL's state, which the reference does not save and which is reset
when training starts), and every shape mismatch are a
:class:`ConversionError` listing them all.
"""
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

#: Class order of every reference checkpoint (``cls2id`` of their dataset).
REFERENCE_CLASSES = ('Pedestrian', 'Car', 'Cyclist')

#: Reference keys that no forward pass uses, with the reason.
KNOWN_UNUSED = {
    r'(^|\.)fc\.(weight|bias)$':
    'DLA-34 ImageNet classifier: never run by the detector (random, '
    'untrained in detector checkpoints)',
    r'^rgb_fs\.':
    'MonoSKD ReviewKD fusion: built, but only used outside the dlaup_kd '
    'path that MonoSKD and MonoASD train with',
}

#: Heads whose first conv reads [features, x, y, class one-hot].
ROI_HEADS = ('offset_3d', 'size_3d', 'heading', 'vis_depth', 'att_depth',
             'vis_depth_uncer', 'att_depth_uncer')
DENSE_HEADS = ('heatmap', 'offset_2d', 'size_2d')

#: Our keys no reference checkpoint holds (filled from the built model).
FILLED_FROM_MODEL = r'(^|\.)bbox_head\.htl\.'

#: Input each side reads (``meta['input_key']``, checked by the distiller).
SIDE_INPUT_KEY = {'student': 'imgs', 'teacher': 'depth_imgs'}
SIDE_PREFIX = {'student': 'centernet_rgb.', 'teacher': 'centernet_depth.'}

_NECK = re.compile(r'^feat_up\.(ida_\d+)\.(proj|up|node)_(\d+)\.(.+)$')
_DISTILLER = [
    (re.compile(r'^adapt_layer(4|8|16|32)\.(.+)$'),
     lambda m: 'adapters.{}.{}'.format(
         {'4': 0, '8': 1, '16': 2, '32': 3}[m[1]], m[2])),
    (re.compile(r'^compute_align_select_loss\.feat_align_(\d+)\.(.+)$'),
     lambda m: f'aligns.{m[1]}.{m[2]}'),
    (re.compile(r'^compute_align_select_loss\.conv_ssm_(stu|tea)_(\d+)\.'
                r'(.+)$'),
     lambda m: f'selects_{m[1][0]}.{m[2]}.{m[3]}'),
    (re.compile(r'^compute_align_select_loss\.conv_(stu|tea)_(\d+)\.(.+)$'),
     lambda m: f'fusions_{m[1][0]}.{m[2]}.{m[3]}'),
]


class ConversionError(ValueError):
    """A reference checkpoint does not fit the target model."""


def unused_reason(key: str) -> Optional[str]:
    """Why a reference key is known to be unused, or None."""
    for pattern, reason in KNOWN_UNUSED.items():
        if re.search(pattern, key):
            return reason
    return None


def reference_state_dict(checkpoint) -> Dict[str, Tensor]:
    """The model weights of a loaded reference checkpoint.

    Accepts ``{'model_state': ...}`` (with or without ``epoch`` and
    ``optimizer_state``) or a bare state dict; strips ``module.``.
    """
    if not isinstance(checkpoint, dict):
        raise ConversionError(
            f'expected a dict checkpoint, got {type(checkpoint).__name__}')
    state = checkpoint.get('model_state', checkpoint)
    if 'state_dict' in checkpoint and 'model_state' not in checkpoint:
        raise ConversionError(
            'this is an mmengine checkpoint (it has "state_dict"), not a '
            'reference one: it needs no conversion')
    if not isinstance(state, dict) or not state:
        raise ConversionError('checkpoint["model_state"] is empty')
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise ConversionError(
            f'model_state has non-tensor entries: {bad[:8]}')
    return {k[len('module.'):] if k.startswith('module.') else k: v
            for k, v in state.items()}


def checkpoint_kind(state: Dict[str, Tensor]) -> str:
    """``'distiller'`` when the student/teacher prefixes are present, else
    ``'detector'``."""
    if any(k.startswith(tuple(SIDE_PREFIX.values())) for k in state):
        return 'distiller'
    return 'detector'


def rename_did_key(key: str) -> str:
    """Our detector key for a reference DID key (no class surgery)."""
    if key == 'mean_size':
        return 'bbox_head.mean_sizes'
    if key.startswith('backbone.'):
        key = key.replace('.bn1.', '.norm1.').replace('.bn2.', '.norm2.')
        return key.replace('.root.bn.', '.root.norm.')
    m = _NECK.match(key)
    if m:
        ida, kind, i, rest = m.groups()
        rest = re.sub(r'^conv\.', '0.', rest)
        rest = re.sub(r'^bn\.', '1.', rest)
        return f'neck.{ida}.{kind}s.{int(i) - 1}.{rest}'
    head = key.split('.', 1)[0]
    if head in DENSE_HEADS + ROI_HEADS:
        return f'bbox_head.{key}'
    raise ConversionError(f'reference key {key!r} has no counterpart')


def rename_distiller_key(key: str) -> Optional[str]:
    """Our distiller key for a reference distiller-module key, or None."""
    for pattern, fn in _DISTILLER:
        m = pattern.match(key)
        if m:
            return fn(m)
    return None


def class_indices(class_names: Sequence[str],
                  source_classes: Sequence[str] = REFERENCE_CLASSES
                  ) -> List[int]:
    """Index in ``source_classes`` of every target class."""
    missing = [c for c in class_names if c not in source_classes]
    if missing:
        raise ConversionError(
            f'classes {missing} are not in the checkpoint\'s classes '
            f'{tuple(source_classes)}')
    return [list(source_classes).index(c) for c in class_names]


def convert_did(state: Dict[str, Tensor], class_names: Sequence[str],
                source_classes: Sequence[str] = REFERENCE_CLASSES
                ) -> Tuple[Dict[str, Tensor], Dict[str, str]]:
    """Map a reference DID state dict onto our detector's keys.

    Args:
        state (dict): Reference DID keys (no side prefix).
        class_names (Sequence[str]): Classes of the target head, in order.
        source_classes (Sequence[str]): Classes of the checkpoint, in its
            label order. Defaults to :data:`REFERENCE_CLASSES`.

    Returns:
        tuple[dict, dict]: Our keys -> tensors, and the dropped reference
        keys -> reason.
    """
    idx = class_indices(class_names, source_classes)
    k_src = len(source_classes)
    out, dropped, unknown = {}, {}, []
    for key, value in state.items():
        reason = unused_reason(key)
        if reason is not None:
            dropped[key] = reason
            continue
        try:
            new = rename_did_key(key)
        except ConversionError:
            unknown.append(key)
            continue
        head = key.split('.', 1)[0]
        if key in ('heatmap.2.weight', 'heatmap.2.bias', 'mean_size'):
            if value.shape[0] != k_src:
                raise ConversionError(
                    f'{key} has {value.shape[0]} classes, the checkpoint '
                    f'classes are {tuple(source_classes)}')
            value = value[idx]
        elif head in ROI_HEADS and key == f'{head}.0.weight':
            n_in = value.shape[1]
            keep = list(range(n_in - k_src)) + [n_in - k_src + i for i in idx]
            value = value[:, keep]
        out[new] = value.clone()
    if unknown:
        raise ConversionError(
            f'{len(unknown)} reference keys have no counterpart: '
            f'{unknown[:12]}' + (' ...' if len(unknown) > 12 else ''))
    return out, dropped


def convert_reference(state: Dict[str, Tensor], side: str,
                      class_names: Sequence[str],
                      source_classes: Sequence[str] = REFERENCE_CLASSES
                      ) -> Tuple[Dict[str, Tensor], Dict[str, str]]:
    """Convert one side of a reference checkpoint.

    Args:
        state (dict): Output of :func:`reference_state_dict`.
        side (str): ``'student'`` or ``'teacher'`` (a detector; from a
            distillation checkpoint, the ``centernet_rgb.`` or
            ``centernet_depth.`` side; a detector checkpoint is taken
            whole), or ``'distiller'`` (our :class:`AlignSelectDistiller`
            keys: the student under ``student.`` plus adapters, align,
            select and fusion modules; the teacher is loaded separately
            through ``teacher_ckpt``, as our distiller saves no teacher).
        class_names (Sequence[str]): Target classes, in order.
        source_classes (Sequence[str]): Checkpoint classes, in order.

    Returns:
        tuple[dict, dict]: Our state dict and the dropped keys -> reason.
    """
    if side not in ('student', 'teacher', 'distiller'):
        raise ConversionError(
            f"side must be 'student', 'teacher' or 'distiller', got "
            f'{side!r}')
    kind = checkpoint_kind(state)
    if kind == 'detector':
        if side == 'distiller':
            raise ConversionError(
                'a detector checkpoint has no distiller modules; convert it '
                "with side='student' or 'teacher'")
        return convert_did(state, class_names, source_classes)
    pick = 'student' if side == 'distiller' else side
    prefix = SIDE_PREFIX[pick]
    did = {k[len(prefix):]: v for k, v in state.items()
           if k.startswith(prefix)}
    if not did:
        raise ConversionError(
            f'the distillation checkpoint has no {prefix!r} keys')
    out, dropped = convert_did(did, class_names, source_classes)
    dropped = {prefix + k: v for k, v in dropped.items()}
    others = [k for k in state if not k.startswith(
        tuple(SIDE_PREFIX.values()))]
    if side == 'distiller':
        out = {'student.' + k: v for k, v in out.items()}
        dropped.update({k: 'the teacher: give it as teacher_ckpt'
                        for k in state
                        if k.startswith(SIDE_PREFIX['teacher'])})
        unknown = []
        for key in others:
            reason = unused_reason(key)
            new = rename_distiller_key(key)
            if reason is not None:
                dropped[key] = reason
            elif new is not None:
                out[new] = state[key].clone()
            else:
                unknown.append(key)
        if unknown:
            raise ConversionError(
                f'{len(unknown)} distiller keys have no counterpart: '
                f'{unknown[:12]}')
    else:
        other = 'teacher' if side == 'student' else 'student'
        for key in others:
            dropped[key] = f'distiller module, not part of the {side}'
        for key in state:
            if key.startswith(SIDE_PREFIX[other]):
                dropped[key] = f'the {other} side'
    return out, dropped


def fit_to_model(converted: Dict[str, Tensor],
                 model_state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Check a converted state dict against a model's and complete it.

    Keys matching :data:`FILLED_FROM_MODEL` (HTL's loss statistics, which
    the reference keeps outside the model) are taken from ``model_state``.

    Raises:
        ConversionError: Listing every missing key, unexpected key and
            shape mismatch.
    """
    own = dict(model_state)
    missing = sorted(k for k in own if k not in converted
                     and not re.search(FILLED_FROM_MODEL, k))
    unexpected = sorted(k for k in converted if k not in own)
    shapes = [f'{k}: checkpoint {tuple(converted[k].shape)} vs model '
              f'{tuple(own[k].shape)}' for k in sorted(converted)
              if k in own and converted[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        for name, items in (('missing keys', missing),
                            ('unexpected keys', unexpected),
                            ('shape mismatches', shapes)):
            if items:
                parts.append(f'{len(items)} {name}: ' + ', '.join(
                    items[:12]) + (' ...' if len(items) > 12 else ''))
        raise ConversionError('the converted weights do not fit the model: '
                              + '; '.join(parts))
    out = {}
    for k, v in own.items():
        value = converted.get(k, v)
        out[k] = value.to(v.dtype) if value.dtype != v.dtype else value
    return out


def convert_imagenet_dla(state: Dict[str, Tensor]
                         ) -> Tuple[Dict[str, Tensor], Dict[str, str]]:
    """ImageNet DLA-34 weights (``dla34-ba72cf86.pth``) -> ``DLANet`` keys.

    The file uses the reference DLA's norm names; mmdet3d's ``DLANet``
    calls them ``norm1``/``norm2``/``root.norm``, so loading the file
    directly (``init_cfg=dict(type='Pretrained')``, which is not strict)
    leaves the BasicBlock and Root norms at their defaults. The classifier
    ``fc`` is dropped.
    """
    out, dropped = {}, {}
    for key, value in state.items():
        if unused_reason(key) is not None:
            dropped[key] = unused_reason(key)
            continue
        new = rename_did_key('backbone.' + key)[len('backbone.'):]
        out[new] = value.clone()
    return out, dropped


def convert_checkpoint_file(src: str, dst: str, side: str,
                            model: torch.nn.Module,
                            class_names: Optional[Sequence[str]] = None,
                            source_classes: Sequence[str] = REFERENCE_CLASSES
                            ) -> dict:
    """Convert the reference checkpoint ``src`` for ``model``; write ``dst``.

    Args:
        src (str): Reference checkpoint (read with the weights-only loader
            and MonoASD's allow-list: nothing else is unpickled).
        dst (str): mmengine checkpoint to write (``state_dict`` and
            ``meta``: source file, side, classes, dropped keys,
            ``input_key``).
        side (str): ``'student'``, ``'teacher'``, ``'distiller'`` (see
            :func:`convert_reference`) or ``'imagenet'`` (an ImageNet
            DLA-34 file for ``model`` = a ``DLANet``; see
            :func:`convert_imagenet_dla`).
        model (nn.Module): The target, built from its config; its state
            dict decides the keys and shapes, and fills HTL's state.
        class_names (Sequence[str], optional): Target classes; defaults to
            ``model``'s head ``class_names``.
        source_classes (Sequence[str]): Classes of ``src`` in label order.

    Returns:
        dict: ``mapped``, ``filled`` and ``dropped`` (key -> reason).
    """
    from .checkpoint import safe_torch_load, save_checkpoint_atomic
    raw = safe_torch_load(src, map_location='cpu')
    if side != 'imagenet' and class_names is None:
        head = getattr(model, 'bbox_head', None) or getattr(
            getattr(model, 'student', None), 'bbox_head', None)
        if head is None or not hasattr(head, 'class_names'):
            raise ConversionError(
                'pass class_names: the model has no bbox_head.class_names')
        class_names = head.class_names
    try:
        if side == 'imagenet':
            state = raw.get('state_dict', raw) if isinstance(raw, dict) \
                else raw
            converted, dropped = convert_imagenet_dla(
                reference_state_dict(state))
        else:
            converted, dropped = convert_reference(
                reference_state_dict(raw), side, class_names,
                source_classes)
        fitted = fit_to_model(converted, model.state_dict())
    except ConversionError as exc:
        raise ConversionError(f'{src} ({side}): {exc}') from None
    meta = dict(
        converted_from=str(src), converter='monoasd.utils.'
        'reference_converter', side=side,
        dropped_keys=sorted(dropped))
    if side != 'imagenet':
        meta.update(class_names=list(class_names),
                    source_classes=list(source_classes),
                    input_key=SIDE_INPUT_KEY.get(side, 'imgs'))
        if isinstance(raw, dict) and isinstance(raw.get('epoch'), int):
            meta['source_epoch'] = raw['epoch']
    save_checkpoint_atomic(dict(state_dict=fitted, meta=meta), dst)
    return dict(mapped=len(converted), filled=len(fitted) - len(converted),
                dropped=dropped)
