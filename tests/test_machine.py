"""The machine record of the benchmark and the main job's report
(``monoasd.utils.machine``, ``monoasd.apis.report.record_machine``)."""
import json
import os
from types import SimpleNamespace

import torch

from monoasd.apis import report
from monoasd.utils import cpu_model, machine_info, machine_line


def test_cpu_model_reads_cpuinfo(tmp_path):
    info = tmp_path / 'cpuinfo'
    info.write_text('processor\t: 0\nvendor_id\t: AuthenticAMD\n'
                    'model name\t: AMD EPYC 7B13\nprocessor\t: 1\n'
                    'model name\t: AMD EPYC 7B13\n')
    assert cpu_model(str(info)) == 'AMD EPYC 7B13'


def test_cpu_model_without_cpuinfo(tmp_path, monkeypatch):
    monkeypatch.setattr('platform.processor', lambda: '')
    assert cpu_model(str(tmp_path / 'missing')) == 'unknown'
    monkeypatch.setattr('platform.processor', lambda: 'arm')
    assert cpu_model(str(tmp_path / 'missing')) == 'arm'


def test_machine_info_describes_this_process():
    info = machine_info()
    assert info['logical_cpus'] == os.cpu_count()
    assert info['torch'] == torch.__version__
    assert info['cpu'] and isinstance(info['cpu'], str)
    assert info['cpu_capability'] == \
        torch.backends.cpu.get_cpu_capability()
    assert (info['cuda'] is None) == (not torch.cuda.is_available())
    json.dumps(info)  # goes into results.json as it is


def test_machine_line():
    info = dict(cpu='AMD EPYC', logical_cpus=2, cpu_capability='AVX2',
                torch='2.13.0+cpu', cuda=None, host='h')
    assert machine_line(info) == \
        'AMD EPYC, 2 logical CPUs, AVX2, torch 2.13.0+cpu'
    info['cuda'] = 'NVIDIA H100'
    assert machine_line(info).endswith(', GPU NVIDIA H100')


def test_record_machine_lists_the_stages_per_machine(tmp_path, monkeypatch):
    work, ev = tmp_path / 'w', tmp_path / 'ev'
    report.record_machine(str(work), 'data')
    report.record_machine(str(work), 'teacher+student')
    report.record_machine(str(work), 'data')  # once per stage
    here = machine_line(machine_info())
    assert json.load(open(work / 'machines.json')) == {
        here: ['data', 'teacher+student']}
    # a later stage on another machine, the eval stage in --eval-dir
    other = dict(machine_info(), cpu='Other CPU')
    monkeypatch.setattr(report, 'machine_info', lambda: other)
    report.record_machine(str(work), 'control+monoasd')
    report.record_machine(str(ev), 'eval')
    args = SimpleNamespace(work_dir=str(work), eval_dir=str(ev))
    assert report.stage_machines(args) == {
        here: ['data', 'teacher+student'],
        machine_line(other): ['control+monoasd', 'eval']}
