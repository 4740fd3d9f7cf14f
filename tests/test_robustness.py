"""Bad KITTI-format input: one clear error naming the file or frame, or a
documented handling with a count; never a silent wrong result.

Every test breaks one thing in a copy of the tiny synthetic KITTI.
"""
import copy
import json
import logging
import shutil
from pathlib import Path

import cv2
import mmengine
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmdet3d.registry import DATASETS, METRICS, MODELS

import monoasd  # noqa: F401
from monoasd.datasets import (FrameError, KittiFormatError,
                              check_kitti_root)
from monoasd.datasets.transforms import LoadDenseDepth
from monoasd.utils import UnsafeCheckpointError, safe_torch_load

from conftest import import_tool

ROOT = Path(__file__).resolve().parents[1]
STUDENT_CFG = (ROOT / 'configs/monoasd/'
               'did-m3d_dla34_tiny_mini-kitti-car_student.py')
MONOASD_CFG = ROOT / 'configs/monoasd/monoasd_dla34_tiny_mini-kitti-car.py'


@pytest.fixture
def kitti_copy(mini_kitti, tmp_path):
    """A private copy of the tiny KITTI (with infos) to break."""
    root, _ = mini_kitti
    dst = tmp_path / 'kitti'
    shutil.copytree(root, dst)
    return dst


def first_id(root, split='train'):
    return (root / 'ImageSets' / f'{split}.txt').read_text().split()[0]


def problems_of(root):
    with pytest.raises(KittiFormatError) as err:
        check_kitti_root(str(root))
    return err.value.problems


# ------------------------------------------------------------ create_data
def test_clean_copy_passes_the_check(kitti_copy):
    out = check_kitti_root(str(kitti_copy))
    assert out['frames'] > 0 and not out['unknown_classes']


def test_truncated_image_is_reported(kitti_copy):
    idx = first_id(kitti_copy)
    img = kitti_copy / 'training/image_2' / f'{idx}.png'
    data = img.read_bytes()
    img.write_bytes(data[:len(data) // 2])
    (msg, ) = problems_of(kitti_copy)
    assert str(img) in msg and 'not a readable image' in msg


def test_missing_calib_is_reported(kitti_copy):
    idx = first_id(kitti_copy)
    calib = kitti_copy / 'training/calib' / f'{idx}.txt'
    calib.unlink()
    (msg, ) = problems_of(kitti_copy)
    assert msg == f'{calib}: missing'


def test_malformed_p2_is_reported(kitti_copy):
    idx = first_id(kitti_copy)
    calib = kitti_copy / 'training/calib' / f'{idx}.txt'
    lines = calib.read_text().splitlines()
    lines = [' '.join(ln.split()[:8]) if ln.startswith('P2:') else ln
             for ln in lines]
    calib.write_text('\n'.join(lines) + '\n')
    (msg, ) = problems_of(kitti_copy)
    assert str(calib) in msg and 'P2 has 7 values, expected 12' in msg


def test_label_line_with_wrong_field_count_is_reported(kitti_copy):
    idx = first_id(kitti_copy)
    label = kitti_copy / 'training/label_2' / f'{idx}.txt'
    label.write_text(label.read_text() + 'Car 0.0 0 1.0 1 2 3\n')
    n = len(label.read_text().splitlines())
    (msg, ) = problems_of(kitti_copy)
    assert msg.startswith(f'{label}:{n}: 7 fields, expected 15')


def test_label_line_with_non_numeric_value_is_reported(kitti_copy):
    idx = first_id(kitti_copy)
    label = kitti_copy / 'training/label_2' / f'{idx}.txt'
    lines = label.read_text().splitlines()
    f = lines[0].split()
    f[11] = 'abc'
    lines[0] = ' '.join(f)
    label.write_text('\n'.join(lines) + '\n')
    (msg, ) = problems_of(kitti_copy)
    assert msg.startswith(f'{label}:1: non-numeric') and "'abc'" in msg


def test_bad_velodyne_size_is_reported(kitti_copy):
    idx = first_id(kitti_copy)
    velo = kitti_copy / 'training/velodyne' / f'{idx}.bin'
    velo.write_bytes(velo.read_bytes()[:-4])
    (msg, ) = problems_of(kitti_copy)
    assert str(velo) in msg and 'not a multiple of 16' in msg


def test_all_bad_frames_are_reported_at_once(kitti_copy):
    ids = (kitti_copy / 'ImageSets/train.txt').read_text().split()
    for idx in ids[:2]:
        (kitti_copy / 'training/calib' / f'{idx}.txt').unlink()
    (kitti_copy / 'training/label_2' / f'{ids[2]}.txt').write_text('Car 1\n')
    assert len(problems_of(kitti_copy)) == 3


def test_unknown_class_warns_with_count_and_keeps_dontcare(kitti_copy):
    ids = (kitti_copy / 'ImageSets/train.txt').read_text().split()
    for idx in ids[:2]:
        label = kitti_copy / 'training/label_2' / f'{idx}.txt'
        lines = label.read_text().splitlines()
        bus = lines[0].split()
        bus[0] = 'Bus'
        dc = ['DontCare', '-1', '-1', '-10', '10', '20', '60', '70'] + \
            ['-1'] * 3 + ['-1000'] * 3 + ['-10']
        label.write_text('\n'.join(lines + [' '.join(bus), ' '.join(dc)]) +
                         '\n')
    create_data = import_tool('create_data')
    with pytest.warns(UserWarning, match="2 label line\\(s\\) of class 'Bus'"):
        create_data.create_kitti_infos(str(kitti_copy))
    infos = mmengine.load(str(kitti_copy / 'kitti_infos_train.pkl'))
    cats = infos['metainfo']['categories']
    # plain str keys; -1 is DontCare alone, whatever the hash seed
    assert all(type(k) is str for k in cats)
    assert [k for k, v in cats.items() if v == -1] == ['DontCare']
    assert 'Bus' not in cats


# ---------------------------------------------------------- dataset build
def build_dataset(root, split='train', pipeline=None, test_mode=None):
    init_default_scope('mmdet3d')
    cfg = Config.fromfile(str(STUDENT_CFG))
    loader = 'train_dataloader' if split == 'train' else 'val_dataloader'
    ds_cfg = copy.deepcopy(cfg[loader].dataset)
    ds_cfg.data_root = str(root) + '/'
    ds_cfg.ann_file = f'kitti_infos_{split}.pkl'
    if pipeline is not None:
        ds_cfg.pipeline = pipeline
    if test_mode is not None:
        ds_cfg.test_mode = test_mode
    return DATASETS.build(ds_cfg)


def empty_frames(root, split='train', keep_dontcare=(0, )):
    """Make every frame of ``split`` empty (DontCare-only for the indices in
    ``keep_dontcare``) and rebuild the infos."""
    ids = (root / 'ImageSets' / f'{split}.txt').read_text().split()
    dc = 'DontCare -1 -1 -10 10 20 60 70 -1 -1 -1 -1000 -1000 -1000 -10\n'
    for i, idx in enumerate(ids):
        text = dc if i in keep_dontcare else ''
        (root / 'training/label_2' / f'{idx}.txt').write_text(text)
    import_tool('create_data').create_kitti_infos(str(root))
    return ids


def test_empty_and_dontcare_only_frames_load_and_train(kitti_copy):
    empty_frames(kitti_copy, 'train', keep_dontcare=(0, ))
    ds = build_dataset(kitti_copy, 'train')
    assert len(ds) == 4
    samples = [ds[i] for i in range(len(ds))]
    for s in samples:
        assert len(s['data_samples'].gt_instances_3d) == 0
    init_default_scope('mmdet3d')
    cfg = Config.fromfile(str(STUDENT_CFG))
    cfg.model.bbox_head.head_conv = 16
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    data = model.data_preprocessor(pseudo_collate(samples[:2]), True)
    losses = model(**data, mode='loss')
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()


def test_empty_val_frames_evaluate(kitti_copy):
    empty_frames(kitti_copy, 'val', keep_dontcare=(1, ))
    ds = build_dataset(kitti_copy, 'val')
    assert len(ds) == 2 and ds[0] and ds[1]
    init_default_scope('mmdet3d')
    metric = METRICS.build(dict(
        type='MonoKittiMetric',
        ann_file=str(kitti_copy / 'kitti_infos_val.pkl')))
    metric.dataset_meta = ds.metainfo
    from mmdet3d.structures import CameraInstance3DBoxes
    from mmengine.structures import InstanceData
    results = []
    for i in range(2):
        p3d = InstanceData(bboxes_3d=CameraInstance3DBoxes(
            torch.tensor([[1.0, 1.5, 20.0, 3.9, 1.5, 1.6, 0.0]])),
            scores_3d=torch.tensor([0.5]), labels_3d=torch.tensor([0]))
        p2d = InstanceData(bboxes=torch.tensor([[10.0, 20.0, 60.0, 70.0]]),
                           scores=torch.tensor([0.5]),
                           labels=torch.tensor([0]))
        results.append(dict(pred_instances_3d=p3d, pred_instances=p2d,
                            sample_idx=i))
    out = metric.compute_metrics(results)
    # no ground-truth cars: every AP is 0, and nothing crashed
    assert out['pred_instances_3d/KITTI/Car_3D_AP40_moderate_strict'] == 0.0


def test_pictures_choose_frames_with_ground_truth(kitti_copy):
    # the report draws the first val frames holding a box of the config's
    # classes: a frame with only a Pedestrian and DontCare comes after
    from monoasd.apis import report
    ids = (kitti_copy / 'ImageSets' / 'val.txt').read_text().split()
    lines = {
        ids[0]: 'Pedestrian 0.00 0 -0.20 712 143 810 307 1.89 0.48 1.20 '
                '1.84 1.47 8.41 0.01\n'
                'DontCare -1 -1 -10 10 20 60 70 -1 -1 -1 -1000 -1000 '
                '-1000 -10\n',
        ids[1]: 'Car 0.00 0 -1.58 287 93 314 120 1.65 1.67 3.64 -0.65 '
                '1.71 26.70 -1.59\n'
    }
    for idx, text in lines.items():
        (kitti_copy / 'training/label_2' / f'{idx}.txt').write_text(text)
    import_tool('create_data').create_kitti_infos(str(kitti_copy))
    _, ds = report.val_dataset(str(STUDENT_CFG), str(kitti_copy))
    assert report.picture_frames(ds, 1) == [1]
    assert report.picture_frames(ds, 2) == [1, 0]
    assert report.picture_frames(ds, 5) == [1, 0]
    # the report's pictures: one per chosen frame, named by its image
    from mmengine.runner import save_checkpoint
    model = MODELS.build(Config.fromfile(str(STUDENT_CFG)).model)
    ckpt = kitti_copy / 'random.pth'
    save_checkpoint({'state_dict': model.state_dict()}, str(ckpt))
    out = kitti_copy / 'pictures'
    out.mkdir()
    written = report.write_pictures(
        {'student': (str(STUDENT_CFG), str(ckpt))}, str(kitti_copy),
        str(out), num_frames=1)
    assert written == [str(out / f'pred_{ids[1]}.png')]
    assert (out / f'pred_{ids[1]}.png').stat().st_size > 0
    # a report drawn again lists its own pictures, not an earlier report's
    run_main = import_tool('run_main')
    work = kitti_copy / 'work'
    (work / 'teacher').mkdir(parents=True)
    (work / 'teacher' / 'test_metrics.json').write_text(json.dumps(
        {report.AP_KEY.format('3D', 'moderate', 'loose'): 5.0}))
    (out / 'pred_999999.png').write_bytes(b'from an earlier report')
    args = run_main.parse_args(['--work-dir', str(work), '--data-root',
                                str(kitti_copy), '--results', str(out)])
    report.write_report(['teacher'], args, picture_models={
        'teacher': (str(STUDENT_CFG), str(ckpt))})
    listed = [ln for ln in (out / 'results.md').read_text().splitlines()
              if ln.startswith('![pred_')]
    assert listed == [f'![pred_{i}.png](pred_{i}.png)' for i in ids[::-1]]
    assert not (out / 'pred_999999.png').exists()
    empty_frames(kitti_copy, 'val')  # no ground truth anywhere
    _, ds = report.val_dataset(str(STUDENT_CFG), str(kitti_copy))
    assert report.picture_frames(ds, 2) == [0, 1]


def test_corrupt_image_error_names_the_frame(kitti_copy):
    idx = first_id(kitti_copy)
    (kitti_copy / 'training/image_2' / f'{idx}.png').write_bytes(b'no png')
    ds = build_dataset(kitti_copy, 'train')
    with pytest.raises(FrameError, match=f'frame {idx} .*could not be '
                       'decoded'):
        ds[0]


def test_missing_depth_map_error_names_the_file(kitti_copy):
    idx = first_id(kitti_copy)
    path = kitti_copy / 'training/depth_dense' / f'{idx}.png'
    path.unlink()
    with pytest.raises(FrameError, match=f'{path}.*missing'):
        build_dataset(kitti_copy, 'train')[0]


def test_corrupt_depth_map_error_names_the_file(kitti_copy):
    idx = first_id(kitti_copy)
    path = kitti_copy / 'training/depth_dense' / f'{idx}.png'
    path.write_bytes(b'garbage')
    with pytest.raises(FrameError, match=f'{path} is not a readable PNG'):
        build_dataset(kitti_copy, 'train')[0]


def test_depth_map_that_is_no_crop_is_refused(kitti_copy):
    idx = first_id(kitti_copy)
    path = kitti_copy / 'training/depth_dense' / f'{idx}.png'
    cv2.imwrite(str(path), np.full((100, 300), 2560, np.uint16))
    with pytest.raises(FrameError, match='300x100 but its image is 621x188'):
        build_dataset(kitti_copy, 'train')[0]


def test_kitti_sized_depth_crop_is_padded():
    load = LoadDenseDepth()
    assert load.max_pad_ratio == 0.1
    from monoasd.datasets.transforms.loading import pad_depth_to_image
    out = pad_depth_to_image(np.ones((352, 1216), np.float32), (375, 1242))
    assert out.shape == (375, 1242)
    with pytest.raises(ValueError, match='600x200'):
        pad_depth_to_image(np.ones((200, 600), np.float32), (375, 1242))


def test_v1_info_file_names_the_tool(kitti_copy):
    path = kitti_copy / 'kitti_infos_train.pkl'
    mmengine.dump([dict(image=dict(image_idx=0))], str(path))
    with pytest.raises(ValueError, match='old v1 format.*tools/create_data'):
        build_dataset(kitti_copy, 'train')


def test_info_without_cam_instances_names_the_tool(kitti_copy):
    path = kitti_copy / 'kitti_infos_train.pkl'
    infos = mmengine.load(str(path))
    del infos['data_list'][1]['cam_instances']
    mmengine.dump(infos, str(path))
    with pytest.raises(KeyError, match='cam_instances.*tools/create_data'):
        build_dataset(kitti_copy, 'train')


# ------------------------------------------------------------ checkpoints
def test_checkpoint_with_numpy_str_meta_loads(tmp_path):
    path = tmp_path / 'c.pth'
    meta = dict(dataset_meta=dict(categories={np.str_('DontCare'): -1}))
    torch.save(dict(state_dict={}, meta=meta), path)
    out = safe_torch_load(str(path))
    assert out['meta']['dataset_meta']['categories'] == {'DontCare': -1}


def test_checkpoint_with_arbitrary_object_is_refused(tmp_path):
    path = tmp_path / 'c.pth'
    torch.save(dict(meta=dict(x=logging.getLogger('x'))), path)
    with pytest.raises(UnsafeCheckpointError):
        safe_torch_load(str(path))


def distiller(**kw):
    init_default_scope('mmdet3d')
    cfg = Config.fromfile(str(MONOASD_CFG))
    cfg.model.student.bbox_head.head_conv = 16
    cfg.model.update(kw)
    return MODELS.build(cfg.model)


def save_side(model, path, input_key):
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(input_key=input_key)), path)


def test_missing_teacher_ckpt_is_an_error(tmp_path):
    model = distiller(teacher_ckpt=str(tmp_path / 'nope.pth'))
    with pytest.raises(FileNotFoundError, match='teacher_ckpt=.*nope.pth'):
        model.init_weights()


def test_teacher_ckpt_of_other_architecture_is_an_error(tmp_path):
    model = distiller(teacher_ckpt=None)
    state = model.teacher.state_dict()
    state.pop('bbox_head.heatmap.0.weight')
    state['extra.weight'] = torch.zeros(1)
    key = 'bbox_head.size_2d.2.bias'
    state[key] = torch.zeros(5)
    torch.save(dict(state_dict=state, meta=dict(input_key='depth_imgs')),
               tmp_path / 't.pth')
    model = distiller(teacher_ckpt=str(tmp_path / 't.pth'))
    with pytest.raises(ValueError) as err:
        model.init_weights()
    msg = str(err.value)
    assert '1 missing keys [bbox_head.heatmap.0.weight]' in msg
    assert '1 unexpected keys [extra.weight]' in msg
    assert f'{key}: checkpoint (5,) vs model (2,)' in msg


def test_rgb_checkpoint_as_teacher_is_an_error(tmp_path):
    model = distiller(teacher_ckpt=None)
    save_side(model.student, tmp_path / 's.pth', 'imgs')
    model = distiller(teacher_ckpt=str(tmp_path / 's.pth'))
    with pytest.raises(ValueError, match="inputs\\['imgs'\\].*RGB "
                       'checkpoint cannot be the depth teacher'):
        model.init_weights()


def test_teacher_and_student_ckpts_load(tmp_path):
    src = distiller(teacher_ckpt=None)
    save_side(src.teacher, tmp_path / 't.pth', 'depth_imgs')
    save_side(src.student, tmp_path / 's.pth', 'imgs')
    model = distiller(teacher_ckpt=str(tmp_path / 't.pth'),
                      student_ckpt=str(tmp_path / 's.pth'))
    model.init_weights()
    for a, b in zip(model.student.state_dict().values(),
                    src.student.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(model.teacher.state_dict().values(),
                    src.teacher.state_dict().values()):
        assert torch.equal(a, b)


def test_optimizer_leaves_frozen_teacher_out_quietly(caplog):
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(str(MONOASD_CFG))
    model = distiller(teacher_ckpt=None)
    with caplog.at_level(logging.WARNING):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert 'requires_grad=False' not in caplog.text
    params = {id(p) for g in wrapper.optimizer.param_groups
              for p in g['params']}
    assert not any(id(p) in params for p in model.teacher.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(params) == len(trainable)


def test_nonfinite_loss_stops_naming_the_term():
    init_default_scope('mmdet3d')
    cfg = Config.fromfile(str(STUDENT_CFG))
    cfg.model.bbox_head.head_conv = 16
    model = MODELS.build(cfg.model)
    losses = dict(loss_heatmap=torch.tensor(1.0),
                  loss_depth=torch.tensor(float('nan')))
    with pytest.raises(FloatingPointError, match='loss_depth=nan'):
        model.parse_losses(losses)


def test_train_and_test_tools_on_copy_with_dontcare_empty_mixed_sizes(
        kitti_copy, tmp_path):
    """tools/train.py and tools/test.py on a copy with DontCare lines in
    every labelled frame, two empty frames (one train, one val) and two
    image sizes; the checkpoint trained on it loads in tools/test.py."""
    import subprocess
    import sys
    dc = 'DontCare -1 -1 -10 10 20 60 70 -1 -1 -1 -1000 -1000 -1000 -10\n'
    ids = {s: (kitti_copy / 'ImageSets' / f'{s}.txt').read_text().split()
           for s in ('train', 'val')}
    for split, names in ids.items():
        for i, idx in enumerate(names):
            label = kitti_copy / 'training/label_2' / f'{idx}.txt'
            label.write_text('' if i == 0 else label.read_text() + dc)
    # mixed image sizes: one frame (and its depth map) gets 10 more rows
    # and 20 more columns at the bottom-right (calib and labels still hold)
    idx = ids['train'][1]
    for sub, flag in (('image_2', cv2.IMREAD_COLOR),
                      ('depth_dense', cv2.IMREAD_UNCHANGED)):
        path = str(kitti_copy / 'training' / sub / f'{idx}.png')
        img = cv2.imread(path, flag)
        cv2.imwrite(path, cv2.copyMakeBorder(img, 0, 10, 0, 20,
                                             cv2.BORDER_CONSTANT, value=0))
    import_tool('create_data').create_kitti_infos(str(kitti_copy))
    infos = mmengine.load(str(kitti_copy / 'kitti_infos_train.pkl'))
    sizes = {(i['images']['CAM2']['height'], i['images']['CAM2']['width'])
             for i in infos['data_list']}
    assert len(sizes) == 2
    r = str(kitti_copy) + '/'
    opts = [f'{d}.dataset.data_root={r}' for d in
            ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    opts += [f'{e}.ann_file={r}kitti_infos_val.pkl'
             for e in ('val_evaluator', 'test_evaluator')]
    opts += ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=2',
             'model.bbox_head.head_conv=16'] + [
                 f'{d}.{k}' for d in ('train_dataloader', 'val_dataloader',
                                      'test_dataloader')
                 for k in ('num_workers=0', 'persistent_workers=False')]
    work = tmp_path / 'work'

    def run(args):
        proc = subprocess.run([sys.executable] + args, cwd=ROOT,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout + proc.stderr

    log = run(['tools/train.py', str(STUDENT_CFG), '--work-dir', str(work),
               '--cfg-options'] + opts)
    assert 'nan' not in log.split('Epoch(train)')[-1].split('\n')[0]
    ckpt = work / 'epoch_1.pth'
    meta = safe_torch_load(str(ckpt))['meta']
    assert meta['input_key'] == 'imgs'
    assert all(type(k) is str for k in meta['dataset_meta']['categories'])
    out = tmp_path / 'metrics.json'
    run(['tools/test.py', str(STUDENT_CFG), str(ckpt), '--work-dir',
         str(tmp_path / 'test'), '--out-json', str(out), '--cfg-options'] +
        opts)
    metrics = mmengine.load(str(out))
    assert 'Kitti metric/pred_instances_3d/KITTI/' \
        'Car_3D_AP40_moderate_strict' in metrics
