"""Oracle analysis (monoasd.evaluation.oracle, tools/analysis_tools)."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from monoasd.evaluation.oracle import (GROUPS, mode_groups,
                                       oracle_from_config, substitute)
from conftest import ap40_ceiling, import_tool

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / 'configs/monoasd/did-m3d_dla34_tiny_mini-kitti-car_student.py'
KEY = 'Kitti metric/pred_instances_3d/KITTI/Car_{}_AP40_moderate_{}'


def test_substitute_takes_nearest_object_and_reexpresses_offset():
    targets = dict(
        labels=torch.tensor([0, 0]), batch_idx=torch.tensor([0, 1]),
        cells=torch.tensor([[10, 4], [3, 3]]),
        depth=torch.tensor([20.0, 35.0]),
        size_3d=torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]),
        offset_3d=torch.tensor([[0.25, 0.5], [0.0, 0.0]]),
        heading_bin=torch.tensor([2, 7]),
        heading_res=torch.tensor([0.1, -0.2]))
    n = 3
    rois = dict(ins_depth=torch.ones(n, 7, 7), size_3d=torch.zeros(n, 3),
                offset_3d=torch.zeros(n, 2), heading=torch.zeros(n, 24))
    # det 0 next to object 0, det 1 two cells away (no match), det 2 in
    # sample 1 on object 1
    centers = torch.tensor([[11, 4], [10, 6], [3, 3]])
    hit = substitute(rois, targets, torch.tensor([0, 0, 1]), centers,
                     ('depth', 'size_3d', 'offset_3d', 'heading'), 12)
    assert hit == 2
    assert torch.all(rois['ins_depth'][0] == 20.0)
    assert torch.all(rois['ins_depth'][1] == 1.0)
    assert torch.all(rois['ins_depth'][2] == 35.0)
    # centre 10.25 seen from cell 11: -0.75
    assert torch.allclose(rois['offset_3d'][0], torch.tensor([-0.75, 0.5]))
    assert rois['heading'][2, :12].argmax() == 7
    assert torch.isclose(rois['heading'][2, 12 + 7], torch.tensor(-0.2))
    assert torch.equal(rois['size_3d'][1], torch.zeros(3))


def test_mode_groups_joins_groups_and_refuses_unknown_names():
    assert mode_groups('model') == () and mode_groups('perfect') == ()
    assert mode_groups('all') == GROUPS
    assert mode_groups('depth') == ('depth', )
    # order of GROUPS whatever the order in the mode
    assert mode_groups('heading+depth') == ('depth', 'heading')
    assert mode_groups('size_3d+offset_3d+heading') == tuple(
        g for g in GROUPS if g != 'depth')
    for bad in ('depht', 'depth+', 'depth+depth', 'all+depth'):
        with pytest.raises(ValueError, match='oracle mode'):
            mode_groups(bad)


def test_perfect_outputs_reach_the_attainable_ap(overfit_data):
    """Targets -> decode -> KittiMetric loses nothing: every moderate car
    is found with a 3D box as good as its 2D box (8 full-size frames)."""
    root = overfit_data
    cfg = Config.fromfile(str(CFG))
    cfg.train_dataloader.dataset.data_root = str(root) + '/'
    cfg.val_evaluator.ann_file = str(root) + '/kitti_infos_train.pkl'
    res = oracle_from_config(cfg, None, None, ('perfect', ))['perfect']
    strict3d = res[KEY.format('3D', 'strict')]
    assert strict3d == res[KEY.format('BEV', 'strict')]
    assert strict3d == res[KEY.format('2D', 'strict')]
    assert abs(strict3d - ap40_ceiling(root)) < 1e-6, strict3d


def test_oracle_tool_prints_every_mode(mini_kitti, capsys):
    root, _ = mini_kitti
    tool = import_tool('analysis_tools/oracle_analysis')
    res = tool.main([str(CFG), '--cfg-options',
                     f'train_dataloader.dataset.data_root={root}/',
                     f'val_evaluator.ann_file={root}/kitti_infos_train.pkl'])
    assert list(res) == ['perfect']
    assert 'perfect' in capsys.readouterr().out
