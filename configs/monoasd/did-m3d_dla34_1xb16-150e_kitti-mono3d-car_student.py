# RGB DID-M3D baseline / MonoASD student on KITTI, Car only (design D4).
_base_ = [
    '../_base_/datasets/kitti-mono3d-did.py',
    '../_base_/models/did-m3d_dla34.py',
    '../_base_/schedules/did-m3d-150e.py', '../_base_/default_runtime.py'
]
train_cfg = dict(val_begin=90)
