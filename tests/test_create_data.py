"""Tests of the KITTI info files (``monoasd.datasets.kitti_infos``) and
of ``tools/create_data.py``, their command line."""
import os
import os.path as osp

import mmengine
import numpy as np
import pytest
from mmdet3d.datasets import KittiDataset
from mmdet3d.structures import CameraInstance3DBoxes

import monoasd  # noqa: F401  (registers the plugin)
from conftest import MINI_HEIGHT, MINI_WIDTH, import_tool, read_labels
from monoasd.datasets import kitti_infos

create_data = import_tool('create_data')

SPLITS = ('train', 'val', 'trainval', 'test')
CLASSES = ('Pedestrian', 'Cyclist', 'Car')


def read_ids(path):
    return [int(line) for line in open(path) if line.strip()]


def label_rows(root, frame):
    return read_labels(osp.join(root, 'training', 'label_2',
                                '%06d.txt' % frame))


def box_3d(row):
    """mmdet3d camera box of a label row: bottom centre, (l, h, w), ry."""
    h, w, length = row['hwl']
    return np.array(list(row['loc']) + [length, h, w, row['ry']])


def test_info_files_and_splits(mini_kitti):
    root, summary = mini_kitti
    assert set(summary) == set(SPLITS)
    # Only the four info files are added; no temporary folder is left.
    assert sorted(os.listdir(root)) == [
        'ImageSets', 'kitti_infos_test.pkl', 'kitti_infos_train.pkl',
        'kitti_infos_trainval.pkl', 'kitti_infos_val.pkl', 'synthetic.json',
        'testing', 'training']
    for split in SPLITS:
        path = root / f'kitti_infos_{split}.pkl'
        assert summary[split][0] == str(path)
        infos = mmengine.load(path)
        assert set(infos) == {'metainfo', 'data_list'}
        meta = infos['metainfo']
        assert meta['dataset'] == 'kitti'
        assert [meta['categories'][c] for c in CLASSES] == [0, 1, 2]
        ids = read_ids(root / 'ImageSets' / f'{split}.txt')
        data_list = infos['data_list']
        assert len(data_list) == len(ids) == summary[split][1]
        if split == 'trainval':  # mmdet3d writes train infos + val infos
            assert sorted(ids) == ids
            ids = (read_ids(root / 'ImageSets' / 'train.txt') +
                   read_ids(root / 'ImageSets' / 'val.txt'))
        assert [d['sample_idx'] for d in data_list] == ids
        folder = 'testing' if split == 'test' else 'training'
        for info in data_list:
            cam2 = info['images']['CAM2']
            assert cam2['img_path'] == '%06d.png' % info['sample_idx']
            assert (root / folder / 'image_2' / cam2['img_path']).exists()
            assert (cam2['height'], cam2['width']) == (188, 621)
            assert np.asarray(cam2['cam2img']).shape == (4, 4)
        n_cam = sum(len(d.get('cam_instances', {}).get('CAM2', []))
                    for d in data_list)
        assert summary[split][2] == n_cam
        if split == 'test':
            assert n_cam == 0
        else:
            assert n_cam > 0


def test_cam_instances_carry_label_fields(mini_kitti):
    root, _ = mini_kitti
    for split in ('train', 'val', 'trainval'):
        for info in mmengine.load(
                root / f'kitti_infos_{split}.pkl')['data_list']:
            rows = [r for r in label_rows(root, info['sample_idx'])
                    if r['type'] in CLASSES]
            cams = info['cam_instances']['CAM2']
            # Every synthetic object is visible: one camera instance each,
            # in label order.
            assert len(cams) == len(rows)
            for cam, row in zip(cams, rows):
                np.testing.assert_allclose(cam['bbox_3d'], box_3d(row),
                                           atol=1e-5)
                assert cam['bbox_label_3d'] == CLASSES.index(row['type'])
                assert cam['truncated'] == row['truncated']
                assert cam['occluded'] == row['occluded']
                assert isinstance(cam['occluded'], int)
                assert cam['kitti_bbox'] == list(row['bbox'])
                # mmdet3d's own 'bbox' is the projected 3D box, not the
                # annotated one.
                assert len(cam['bbox']) == 4


def test_add_kitti_fields_matching():
    inst = [dict(bbox_3d=[1.0, 1.6, 10.0, 4, 1.5, 1.6, 0.1], truncated=0.2,
                 occluded=1, bbox=[1, 2, 3, 4]),
            dict(bbox_3d=[-3.0, 1.6, 20.0, 4, 1.5, 1.6, 0.2], truncated=0.0,
                 occluded=2, bbox=[5, 6, 7, 8])]
    cams = [dict(bbox_3d=[-3.0, 1.6, 20.0, 4, 1.5, 1.6, 0.2]),
            dict(bbox_3d=[1.0, 1.6, 10.0, 4, 1.5, 1.6, 0.1])]
    data = [dict(sample_idx=0, instances=inst, cam_instances=dict(
        CAM2=cams)), dict(sample_idx=1, instances=[])]
    assert kitti_infos.add_kitti_fields(data) == 2
    assert (cams[0]['truncated'], cams[0]['occluded'],
            cams[0]['kitti_bbox']) == (0.0, 2, [5.0, 6.0, 7.0, 8.0])
    assert (cams[1]['truncated'], cams[1]['occluded'],
            cams[1]['kitti_bbox']) == (0.2, 1, [1.0, 2.0, 3.0, 4.0])
    bad = [dict(sample_idx=7, instances=inst, cam_instances=dict(CAM2=[
        dict(bbox_3d=[0.0, 1.6, 30.0, 4, 1.5, 1.6, 0.1])]))]
    with pytest.raises(ValueError, match='sample 7'):
        kitti_infos.add_kitti_fields(bad)


@pytest.mark.parametrize('classes', [('Car', ), CLASSES])
def test_kitti_dataset_reads_infos(mini_kitti, classes):
    root, _ = mini_kitti
    dataset = KittiDataset(
        data_root=str(root),
        ann_file='kitti_infos_val.pkl',
        data_prefix=dict(img='training/image_2'),
        pipeline=[],
        modality=dict(use_lidar=False, use_camera=True),
        load_type='fov_image_based',
        box_type_3d='Camera',
        metainfo=dict(classes=list(classes)))
    ids = read_ids(root / 'ImageSets' / 'val.txt')
    assert len(dataset) == len(ids)
    total = 0
    for idx, frame in enumerate(ids):
        info = dataset.get_data_info(idx)
        assert info['img_path'] == str(root / 'training' / 'image_2' /
                                       ('%06d.png' % frame))
        rows = [r for r in label_rows(root, frame) if r['type'] in classes]
        ann = info['ann_info']
        assert isinstance(ann['gt_bboxes_3d'], CameraInstance3DBoxes)
        assert len(ann['gt_bboxes_3d']) == len(rows)
        assert ann['gt_labels_3d'].tolist() == [
            classes.index(r['type']) for r in rows]
        if not rows:
            continue
        total += len(rows)
        np.testing.assert_allclose(ann['gt_bboxes_3d'].tensor.numpy(),
                                   [box_3d(r) for r in rows], atol=1e-5)
        # The MonoASD fields stay aligned with the boxes after
        # KittiDataset's class filtering.
        np.testing.assert_allclose(ann['kitti_bbox'],
                                   [r['bbox'] for r in rows])
        assert ann['truncated'].tolist() == [r['truncated'] for r in rows]
        assert ann['occluded'].tolist() == [r['occluded'] for r in rows]
        assert ann['centers_2d'].shape == (len(rows), 2)
    assert total > 0


def test_kitti_metric_reads_val_infos(mini_kitti):
    # (mmdet3d.evaluation needs pandas, which its lyft metric imports.)
    from mmdet3d.evaluation.metrics import KittiMetric
    root, _ = mini_kitti
    ann_file = str(root / 'kitti_infos_val.pkl')
    metric = KittiMetric(ann_file=ann_file, metric='bbox')
    annos = metric.convert_annos_to_kitti_annos(mmengine.load(ann_file))
    ids = read_ids(root / 'ImageSets' / 'val.txt')
    assert [a['sample_idx'] for a in annos] == ids
    for anno in annos:
        rows = label_rows(root, anno['sample_idx'])
        kitti = anno['kitti_annos']
        assert list(kitti['name']) == [r['type'] for r in rows]
        np.testing.assert_allclose(kitti['bbox'], [r['bbox'] for r in rows])
        np.testing.assert_allclose(kitti['occluded'],
                                   [r['occluded'] for r in rows])


def test_cli_writes_same_infos(mini_kitti, tmp_path, capsys):
    root, _ = mini_kitti
    create_data.main(['kitti', '--root-path', str(root), '--out-dir',
                      str(tmp_path), '--extra-tag', 'mini'])
    assert 'camera instances' in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == [
        f'mini_infos_{s}.pkl' for s in sorted(SPLITS)]
    for split in SPLITS:
        new = mmengine.load(tmp_path / f'mini_infos_{split}.pkl')
        old = mmengine.load(root / f'kitti_infos_{split}.pkl')
        assert new['data_list'] == old['data_list']
    with pytest.raises(FileNotFoundError, match='ImageSets'):
        kitti_infos.create_kitti_infos(str(tmp_path / 'nowhere'))


def test_empty_split_gets_an_empty_info_file(tmp_path):
    """A KITTI copy without test frames (empty ``ImageSets/test.txt``):
    mmdet3d's v2 updater raises on an empty split; the test infos are
    written empty, with the metainfo of the other splits."""
    from monoasd.synthetic import write_dataset
    root = str(tmp_path / 'kitti')
    write_dataset(root, 3, 2, 0, seed=0, width=MINI_WIDTH,
                  height=MINI_HEIGHT, workers=1, progress=False)
    assert open(osp.join(root, 'ImageSets', 'test.txt')).read().strip() == ''
    summary = kitti_infos.create_kitti_infos(root)
    assert [summary[s][1] for s in SPLITS] == [3, 2, 5, 0]
    test = mmengine.load(osp.join(root, 'kitti_infos_test.pkl'))
    train = mmengine.load(osp.join(root, 'kitti_infos_train.pkl'))
    assert test['data_list'] == []
    assert test['metainfo'] == train['metainfo']
    # (mmengine cannot serialise an empty data list; KittiDataset reads it
    # with serialize_data=False)
    ds = KittiDataset(root, 'kitti_infos_test.pkl', pipeline=[],
                      metainfo=dict(classes=CLASSES), test_mode=True,
                      serialize_data=False)
    assert len(ds) == 0
