"""Reference checkpoint conversion (tools/model_converters/convert_did_m3d).

The reference checkpoints are simulated from tables of their key names and
shapes (``tests/data/reference_*_keys.txt``: every ``state_dict`` key of
DID-M3D's ``DID`` model and of the MonoASD research distiller's own
modules, as their public source builds them), filled with random values.
"""
from pathlib import Path

import pytest
import torch
from mmdet3d.registry import MODELS
from mmengine.config import Config
from mmengine.runner import load_checkpoint

from conftest import import_tool
from monoasd.utils import (REFERENCE_CLASSES, ConversionError,
                           convert_reference, fit_to_model,
                           reference_state_dict)

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / 'data'
CFG = ROOT / 'configs' / 'monoasd'
STUDENT_CFG = CFG / 'did-m3d_dla34_1xb16-150e_kitti-mono3d-car_student.py'


def converter():
    return import_tool('model_converters/convert_did_m3d')


def table(name):
    rows = []
    for line in (DATA / name).read_text().splitlines():
        key, shape = line.split('\t')
        rows.append((key, [int(s) for s in shape.strip('[]').split(',')
                           if s.strip()]))
    return rows


def random_state(rows, seed=0, prefix=''):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in rows:
        if key.endswith('num_batches_tracked'):
            value = torch.tensor(1234)
        elif key.endswith('running_var'):
            value = torch.rand(shape, generator=g) + 0.5
        else:
            value = torch.randn(shape, generator=g) * 0.1
        state[prefix + key] = value
    return state


def reference_did(seed=0):
    state = random_state(table('reference_did_keys.txt'), seed)
    state['mean_size'] = torch.tensor(
        [[1.76255119, 0.66068622, 0.84422524],
         [1.52563191462, 1.62856739989, 3.88311640418],
         [1.73698127, 0.59706367, 1.76282397]])
    return state


def build(cfg_path, **head):
    cfg = Config.fromfile(str(cfg_path))
    model_cfg = cfg.model
    if 'teacher_ckpt' in model_cfg:
        model_cfg.update(teacher_ckpt=None, student_ckpt=None)
    model_cfg.get('bbox_head', {}).update(head)
    return MODELS.build(model_cfg)


def test_reference_key_table_is_complete():
    keys = [k for k, _ in table('reference_did_keys.txt')]
    assert len(keys) == len(set(keys)) == 370
    extras = [k for k, _ in table('reference_monoasd_extra_keys.txt')]
    assert len(extras) == 294


def test_detector_checkpoint_converts_and_loads_strict(tmp_path):
    ref = reference_did(seed=1)
    src, dst = tmp_path / 'did.pth', tmp_path / 'out.pth'
    torch.save(dict(epoch=140, model_state=ref, optimizer_state=None), src)
    assert converter().main([str(src), str(dst), '--side', 'student']) == 0
    model = build(STUDENT_CFG)
    ckpt = load_checkpoint(model, str(dst), map_location='cpu', strict=True)
    assert ckpt['meta']['input_key'] == 'imgs'
    assert ckpt['meta']['source_epoch'] == 140
    assert sorted(ckpt['meta']['dropped_keys']) == [
        'backbone.fc.bias', 'backbone.fc.weight']
    sd = model.state_dict()
    # backbone norms renamed, values unchanged
    assert torch.equal(sd['backbone.level3.tree2.tree1.norm1.weight'],
                       ref['backbone.level3.tree2.tree1.bn1.weight'])
    assert torch.equal(sd['backbone.level5.root.norm.running_var'],
                       ref['backbone.level5.root.bn.running_var'])
    # neck: proj_i/up_i/node_i -> projs/ups/nodes[i - 1]
    assert torch.equal(sd['neck.ida_2.projs.2.0.weight'],
                       ref['feat_up.ida_2.proj_3.conv.weight'])
    assert torch.equal(sd['neck.ida_2.nodes.2.1.bias'],
                       ref['feat_up.ida_2.node_3.bn.bias'])
    assert torch.equal(sd['neck.ida_0.ups.0.weight'],
                       ref['feat_up.ida_0.up_1.weight'])
    # Car is the reference's class 1: heatmap row 1, one-hot channel 66 + 1
    assert torch.equal(sd['bbox_head.heatmap.2.weight'],
                       ref['heatmap.2.weight'][1:2])
    for head in ('offset_3d', 'heading', 'vis_depth', 'att_depth_uncer'):
        w = sd[f'bbox_head.{head}.0.weight']
        assert w.shape[1] == 64 + 2 + 1
        assert torch.equal(w[:, :66], ref[f'{head}.0.weight'][:, :66])
        assert torch.equal(w[:, 66], ref[f'{head}.0.weight'][:, 67])
    assert torch.equal(sd['bbox_head.mean_sizes'], ref['mean_size'][1:2])


def test_three_classes_are_reordered_to_the_config(tmp_path):
    ref = reference_did(seed=2)
    names = ('Pedestrian', 'Cyclist', 'Car')  # our 3-class config's order
    out, dropped = convert_reference(ref, 'teacher', names)
    assert torch.equal(out['bbox_head.heatmap.2.bias'],
                       ref['heatmap.2.bias'][[0, 2, 1]])
    w = out['bbox_head.size_3d.0.weight']
    assert torch.equal(w[:, 66:], ref['size_3d.0.weight'][:, [66, 68, 67]])
    cfg3 = CFG / 'did-m3d_dla34_1xb16-150e_kitti-mono3d-3class_teacher.py'
    model = build(cfg3)
    assert tuple(model.bbox_head.class_names) == names
    model.load_state_dict(fit_to_model(out, model.state_dict()), strict=True)


def test_car_head_computes_what_the_three_class_head_computes():
    """Dropping one-hot channels and heatmap rows is exact for Car."""
    ref = reference_did(seed=3)
    heads = {}
    for names in (REFERENCE_CLASSES, ('Car', )):
        out, _ = convert_reference(ref, 'student', names)
        head = MODELS.build(dict(type='DIDM3DHead', class_names=names,
                                 htl=None))
        weights = {k[len('bbox_head.'):]: v for k, v in out.items()
                   if k.startswith('bbox_head.')}
        head.load_state_dict(weights, strict=True)
        heads[names] = head.eval()
    feat = torch.randn(2, 64, 12, 40)
    trans = torch.eye(3).expand(2, 3, 3)
    cams = torch.tensor([[721.5, 0, 609.6, 44.9], [0, 721.5, 172.9, 0.2],
                         [0, 0, 1, 0.003]]).expand(2, 3, 4)
    centers = torch.tensor([[10, 5], [30, 7], [3, 2]])
    batch_idx = torch.tensor([0, 1, 1])
    with torch.no_grad():
        outs = {}
        for names, head in heads.items():
            dense = head.forward(feat)
            labels = torch.full((3, ), names.index('Car'))
            outs[names] = (dense, head.forward_rois(
                feat, batch_idx, centers, labels, dense, trans, cams))
    d3, r3 = outs[REFERENCE_CLASSES]
    d1, r1 = outs[('Car', )]
    torch.testing.assert_close(d1['heatmap'], d3['heatmap'][:, 1:2],
                               rtol=0, atol=1e-6)
    torch.testing.assert_close(d1['size_2d'], d3['size_2d'], rtol=0, atol=0)
    for key in ('offset_3d', 'size_3d', 'heading', 'ins_depth',
                'ins_depth_uncer'):
        torch.testing.assert_close(r1[key], r3[key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('broken', ['missing', 'shape', 'unknown'])
def test_broken_checkpoint_is_refused_naming_the_key(tmp_path, capsys,
                                                     broken):
    ref = reference_did()
    if broken == 'missing':
        del ref['feat_up.ida_1.node_2.bn.weight']
        name = 'neck.ida_1.nodes.1.1.weight'
    elif broken == 'shape':
        ref['size_3d.4.weight'] = torch.zeros(4, 256, 1, 1)
        name = 'bbox_head.size_3d.4.weight'
    else:
        ref['depth_bin_head.0.weight'] = torch.zeros(3)
        name = 'depth_bin_head.0.weight'
    src, dst = tmp_path / 'did.pth', tmp_path / 'out.pth'
    torch.save(dict(model_state=ref), src)
    assert converter().main([str(src), str(dst), '--side', 'student']) == 1
    err = capsys.readouterr().err
    assert name in err and 'did.pth' in err
    assert not dst.exists()


def test_distillation_checkpoint_sides(tmp_path):
    rgb, depth = reference_did(seed=4), reference_did(seed=5)
    state = {'centernet_rgb.' + k: v for k, v in rgb.items()}
    state.update({'centernet_depth.' + k: v for k, v in depth.items()})
    state.update(random_state(table('reference_monoasd_extra_keys.txt'), 6))
    src = tmp_path / 'checkpoint_epoch_150.pth'
    torch.save(dict(epoch=150, model_state=state, optimizer_state={}), src)
    tool = converter()
    for side, ref in (('student', rgb), ('teacher', depth)):
        dst = tmp_path / f'{side}.pth'
        assert tool.main([str(src), str(dst), '--side', side]) == 0
        ckpt = torch.load(dst, weights_only=True)
        assert ckpt['meta']['input_key'] == (
            'imgs' if side == 'student' else 'depth_imgs')
        assert torch.equal(ckpt['state_dict']['neck.ida_1.projs.0.0.weight'],
                           ref['feat_up.ida_1.proj_1.conv.weight'])
        dropped = ckpt['meta']['dropped_keys']
        assert sum(k.startswith('rgb_fs.') for k in dropped) == 54
    dst = tmp_path / 'distiller.pth'
    assert tool.main([str(src), str(dst), '--side', 'distiller']) == 0
    distiller = build(CFG / 'monoasd_dla34_1xb16-150e_kitti-mono3d-car.py')
    sd = torch.load(dst, weights_only=True)['state_dict']
    distiller.load_state_dict(sd, strict=True)
    own = distiller.state_dict()
    assert torch.equal(
        own['selects_t.3.A_log'],
        state['compute_align_select_loss.conv_ssm_tea_3.A_log'])
    assert torch.equal(own['adapters.2.0.weight'],
                       state['adapt_layer16.0.weight'])
    assert torch.equal(own['student.bbox_head.heatmap.2.bias'],
                       rgb['heatmap.2.bias'][1:2])


def test_imagenet_dla34_names_for_dlanet(tmp_path):
    rows = [(k[len('backbone.'):], s)
            for k, s in table('reference_did_keys.txt')
            if k.startswith('backbone.') and '.fc.' not in k]
    state = random_state(rows + [('fc.weight', [1000, 512, 1, 1]),
                                 ('fc.bias', [1000])], seed=7)
    src, dst = tmp_path / 'dla34-ba72cf86.pth', tmp_path / 'dla34.pth'
    torch.save(state, src)
    assert converter().main([str(src), str(dst), '--side', 'imagenet']) == 0
    backbone = MODELS.build(dict(type='DLANet', depth=34, in_channels=3,
                                 norm_cfg=dict(type='BN')))
    load_checkpoint(backbone, str(dst), map_location='cpu', strict=True)
    assert torch.equal(backbone.state_dict()['level4.tree1.tree1.norm2.bias'],
                       state['level4.tree1.tree1.bn2.bias'])


def test_reference_state_dict_formats():
    ref = {'module.heatmap.0.weight': torch.zeros(1)}
    assert list(reference_state_dict({'model_state': ref})) == [
        'heatmap.0.weight']
    assert list(reference_state_dict(ref)) == ['heatmap.0.weight']
    with pytest.raises(ConversionError, match='mmengine checkpoint'):
        reference_state_dict({'state_dict': {}, 'meta': {}})
    with pytest.raises(ConversionError, match='classes'):
        convert_reference(reference_did(), 'student', ('Van', ))
