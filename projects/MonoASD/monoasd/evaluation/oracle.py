# Copyright (c) MonoASD contributors. All rights reserved.
"""Oracle analysis of a DID-M3D head: which output limits the AP.

Two uses, both through the head's own targets
(:meth:`DIDM3DHead.get_targets`) and decoding
(:meth:`DIDM3DHead.predict_by_feat`):

* ``perfect``: every head output is made from the targets. The AP this
  reaches is the ceiling of the encoding + decoding + metric chain; a bug
  in any of them shows up as a ceiling below the attainable AP.
* a trained model with one output group replaced by its target at each
  detection whose peak lies within one feature cell of an object
  (``depth``, ``size_3d``, ``offset_3d``, ``heading``, or ``all`` of them).
  The AP gained by a group is what its errors cost.

Needs frames with labels (a train or val split) and a pipeline that packs
the ground truth and the dense depth map (the training pipeline; augment
off).
"""
from typing import Callable, Dict, List, Sequence

import torch
from mmengine.dataset import pseudo_collate
from torch import Tensor

#: Output groups that can be replaced by their targets.
GROUPS = ('depth', 'size_3d', 'offset_3d', 'heading')


def mode_groups(mode: str) -> tuple:
    """The output groups an oracle mode replaces by their targets.

    ``'model'`` and ``'perfect'`` replace none (``perfect`` builds every
    output from the targets elsewhere), ``'all'`` every group, a name of
    :data:`GROUPS` that group, and ``+``-joined names (``'depth+offset_3d'``)
    each of them: with all groups but one true, the AP lost is that
    group's alone.
    """
    if mode in ('model', 'perfect'):
        return ()
    if mode == 'all':
        return GROUPS
    names = mode.split('+')
    unknown = [n for n in names if n not in GROUPS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(
            f'unknown oracle mode {mode!r}: choose model, perfect, all, one '
            f'of {GROUPS} or several of them joined by "+" (each once)')
    return tuple(g for g in GROUPS if g in names)


def perfect_dense(targets: Dict[str, Tensor], num_classes: int,
                  feat_hw: Sequence[int]) -> Dict[str, Tensor]:
    """Dense head outputs (logits, 2D offsets and sizes) from targets."""
    heat = targets['heatmap'].clamp(1e-4, 1 - 1e-4)
    b = heat.shape[0]
    fh, fw = feat_hw
    dense = dict(heatmap=torch.log(heat / (1 - heat)),
                 offset_2d=heat.new_zeros(b, 2, fh, fw),
                 size_2d=heat.new_zeros(b, 2, fh, fw))
    bi, cells = targets['batch_idx'], targets['cells']
    for key in ('offset_2d', 'size_2d'):
        dense[key][bi, :, cells[:, 1], cells[:, 0]] = targets[key]
    return dense


def substitute(rois: Dict[str, Tensor], targets: Dict[str, Tensor],
               batch_idx: Tensor, centers: Tensor, groups: Sequence[str],
               num_bins: int, max_cells: int = 1) -> int:
    """Replace ``groups`` of ROI outputs by the nearest object's targets.

    A detection at cell ``c`` of sample ``b`` takes the targets of the
    object of ``b`` whose centre cell is nearest (Chebyshev distance at
    most ``max_cells``). ``offset_3d`` is re-expressed from ``c``.

    Returns:
        int: Number of detections that were matched.
    """
    if not len(targets['labels']) or not len(batch_idx):
        return 0
    tc = targets['cells'].to(centers)
    dist = (tc[None] - centers[:, None]).abs().amax(-1)  # (N, M)
    dist = dist.masked_fill(
        batch_idx[:, None] != targets['batch_idx'][None], 1 << 30)
    best, j = dist.min(1)
    hit = best <= max_cells
    k, j = hit.nonzero()[:, 0], j[hit]
    if 'depth' in groups:
        depth = targets['depth'][j][:, None, None]
        rois['ins_depth'][k] = depth.expand_as(rois['ins_depth'][k])
    if 'size_3d' in groups:
        rois['size_3d'][k] = targets['size_3d'][j]
    if 'offset_3d' in groups:
        c3 = targets['cells'][j].to(centers.dtype) + targets['offset_3d'][j]
        rois['offset_3d'][k] = (c3 - centers[k]).to(rois['offset_3d'])
    if 'heading' in groups:
        heading = torch.zeros_like(rois['heading'][k])
        rows = torch.arange(len(k))
        heading[rows, targets['heading_bin'][j]] = 10.0
        heading[rows, num_bins + targets['heading_bin'][j]] = \
            targets['heading_res'][j]
        rois['heading'][k] = heading
    return int(hit.sum())


@torch.no_grad()
def oracle_predict(model, data: dict, groups: Sequence[str] = (),
                   perfect: bool = False) -> List:
    """Predict one preprocessed batch with oracle substitutions.

    Args:
        model: A :class:`DIDM3D` (eval mode).
        data (dict): Output of the model's data preprocessor
            (``training=True``, so the ground truth and depth map stay).
        groups (Sequence[str]): Groups of :data:`GROUPS` to replace.
        perfect (bool): Replace every output by its target (the model's
            weights are not used).

    Returns:
        list[Det3DDataSample]: Samples with predictions attached.
    """
    head = model.bbox_head
    samples, inputs = data['data_samples'], data['inputs']
    if perfect:
        h, w = inputs['imgs'].shape[-2:]
        fh, fw = h // head.down_ratio, w // head.down_ratio
        feat = inputs['imgs'].new_zeros(len(samples), head.in_channels, fh,
                                        fw)
    else:
        feat = model.extract_feat(inputs)[0]
        fh, fw = feat.shape[-2:]
    targets = head.get_targets(samples, (fh, fw))
    dense = perfect_dense(targets, head.num_classes, (fh, fw)) if perfect \
        else head.forward(feat)
    real = head.forward_rois

    def forward_rois(feat, batch_idx, centers, labels, dense, trans, cams):
        rois = real(feat, batch_idx, centers, labels, dense, trans, cams)
        if perfect:
            rois['ins_depth_uncer'] = torch.full_like(
                rois['ins_depth_uncer'], -10.0)
        substitute(rois, targets, batch_idx, centers,
                   GROUPS if perfect else groups, head.num_heading_bins,
                   max_cells=0 if perfect else 1)
        return rois

    head.forward_rois = forward_rois
    try:
        results_3d, results_2d = head.predict_by_feat(feat, dense, samples)
    finally:
        del head.forward_rois
    return model.add_pred_to_datasample(samples, results_3d, results_2d)


def run_oracle(model, dataset, make_evaluator: Callable,
               modes: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """Evaluate ``modes`` over ``dataset`` (one frame per batch).

    Args:
        model: A :class:`DIDM3D`.
        dataset: Frames with ground truth (training pipeline, no augment).
        make_evaluator (Callable): Returns a fresh mmengine ``Evaluator``
            for the dataset (one per mode).
        modes (Sequence[str]): ``'model'`` (no substitution),
            ``'perfect'``, ``'all'``, the names of :data:`GROUPS` and
            ``+``-joined sets of them (:func:`mode_groups`).

    Returns:
        dict: mode -> the evaluator's metrics.
    """
    groups_of = {mode: mode_groups(mode) for mode in modes}
    model.eval()
    evaluators = {mode: make_evaluator() for mode in modes}
    for i in range(len(dataset)):
        data = model.data_preprocessor(pseudo_collate([dataset[i]]),
                                       training=True)
        for mode in modes:
            samples = oracle_predict(model, data, groups_of[mode],
                                     perfect=mode == 'perfect')
            evaluators[mode].process(data_samples=samples, data_batch=data)
    return {mode: ev.evaluate(len(dataset))
            for mode, ev in evaluators.items()}


def without_augmentation(pipeline: Sequence[dict]) -> List[dict]:
    """A training pipeline with its random augmentation off: no colour
    jitter, no flip or crop in ``MonoAffineAug`` (the same batch every
    time, still with ground truth and depth map)."""
    out = []
    for t in pipeline:
        if t['type'] == 'MonoColorJitter':
            continue
        t = dict(t)
        if t['type'] == 'MonoAffineAug':
            t.update(flip_prob=0.0, crop_prob=0.0)
        out.append(t)
    return out


def oracle_from_config(cfg, checkpoint=None, split_ann: str = None,
                       modes: Sequence[str] = ('model', ) + GROUPS +
                       ('all', )) -> Dict[str, Dict[str, float]]:
    """:func:`run_oracle` for a DID-M3D config and checkpoint.

    The frames are the config's training dataset (``split_ann``: another
    info file of its ``data_root``, e.g. ``'kitti_infos_val.pkl'``) with
    the training pipeline minus augmentation (no flip/crop, no colour
    jitter), evaluated by the config's ``val_evaluator`` on the same info
    file. ``checkpoint`` None is only sensible for ``'perfect'``.
    """
    from mmengine.evaluator import Evaluator
    from mmengine.runner import load_checkpoint

    from mmdet3d.registry import DATASETS, MODELS

    ds_cfg = cfg.train_dataloader.dataset.copy()
    while 'dataset' in ds_cfg:  # RepeatDataset & co.
        ds_cfg = ds_cfg.dataset.copy()
    if split_ann is not None:
        ds_cfg.ann_file = split_ann
    ds_cfg.update(pipeline=without_augmentation(ds_cfg.pipeline),
                  filter_empty_gt=False)
    dataset = DATASETS.build(ds_cfg)
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    ev_cfg = cfg.val_evaluator.copy()
    ev_cfg.ann_file = ds_cfg.data_root + ds_cfg.ann_file

    def make_evaluator():
        ev = Evaluator(ev_cfg.copy())
        ev.dataset_meta = dataset.metainfo
        return ev

    return run_oracle(model, dataset, make_evaluator, modes)
