import pytest
import torch

from discdiff.devices import resolve_device


def test_auto_picks_cuda_only_when_torch_sees_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("name, expected", [("cpu", "cpu"), ("CPU", "cpu"), (" cpu ", "cpu"),
                                            (torch.device("cpu"), "cpu")])
def test_cpu_names(name, expected):
    assert resolve_device(name) == torch.device(expected)


def test_cuda_must_exist(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^device 'cuda': .*use cpu \(or auto\)$"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"^device 'cuda:7': this machine has 2 GPU\(s\), cuda:0 to cuda:1$"):
        resolve_device("cuda:7")


def test_mps_must_be_available(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="MPS"):
        resolve_device("mps")


@pytest.mark.parametrize("name, message", [("bogus", "unknown device 'bogus'"), ("cuda:x", "unknown device"),
                                           ("", "unknown device ''"), ("meta", "discdiff runs on cpu, cuda or mps")])
def test_unknown_devices_are_refused(name, message):
    with pytest.raises(ValueError, match=message):
        resolve_device(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_real_gpu_resolves_and_one_past_the_last_is_refused():
    count = torch.cuda.device_count()
    assert resolve_device("cuda") == torch.device("cuda") and resolve_device("auto").type == "cuda"
    assert resolve_device(f"cuda:{count - 1}").index == count - 1
    with pytest.raises(ValueError, match=f"this machine has {count} GPU"):
        resolve_device(f"cuda:{count}")
