"""monoasd's registered names clash with nothing in mmengine/mmdet/mmdet3d.

A user importing ``monoasd`` beside mmdet3d must not silently replace (or
be refused) one of their components.
"""
import mmdet.registry as mmdet_reg
import mmdet3d.registry as mmdet3d_reg
import mmengine.registry as mmengine_reg
from mmdet.utils import register_all_modules as register_mmdet
from mmdet3d.utils import register_all_modules as register_mmdet3d

import monoasd  # noqa: F401


def test_registered_names_do_not_clash():
    register_mmdet(init_default_scope=False)
    register_mmdet3d(init_default_scope=False)
    ours = {}
    for name in dir(mmdet3d_reg):
        reg = getattr(mmdet3d_reg, name)
        if not isinstance(reg, mmengine_reg.Registry):
            continue
        for key, cls in reg.module_dict.items():
            if getattr(cls, '__module__', '').startswith('monoasd'):
                ours.setdefault(name, []).append(key)
    assert {'MODELS', 'TRANSFORMS', 'DATASETS', 'METRICS',
            'HOOKS', 'TASK_UTILS'} <= set(ours)
    clashes = []
    for name, keys in ours.items():
        others = [getattr(m, name.replace('MMENGINE_', ''), None)
                  for m in (mmdet_reg, mmengine_reg)]
        # mmdet3d's own non-monoasd entries are checked by registration
        # itself (it refuses a duplicate name without force=True)
        for other in others:
            if not isinstance(other, mmengine_reg.Registry):
                continue
            for key in keys:
                cls = other.module_dict.get(key)
                if cls is not None and not cls.__module__.startswith(
                        'monoasd'):
                    clashes.append(f'{name}.{key} vs {cls.__module__}')
    assert not clashes, clashes
