import pytest
import torch

from edgecomp.config import build
from edgecomp.errors import DeviceError
from edgecomp.evaluate import hardware
from edgecomp.evaluate.device import TargetDevice
from edgecomp.evaluate.runtimes.torch_eager import TorchEagerRuntime
from tests.conftest import compose_config


def jetson(board=None, monkeypatch=None):
    return TargetDevice("jetson_nano", "cuda", TorchEagerRuntime(), "fp16", 1, 4, profile_of="Jetson Nano")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_a_gpu_is_a_clear_error():
    cfg = compose_config("train", ["device=cuda"])
    with pytest.raises(DeviceError, match="needs a CUDA GPU"):
        build(cfg.device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the emulation on a machine without a GPU")
def test_jetson_profile_elsewhere_says_it_is_not_the_board(monkeypatch):
    monkeypatch.setattr(hardware, "board_model", lambda: None)
    device = jetson()
    assert device.accelerator == "cpu" and device.precision == "fp32"
    assert "not a Jetson Nano" in device.hardware and hardware.cpu_name() in device.hardware
    assert device.describe()["emulated"] is True


def test_jetson_profile_on_the_board_uses_its_gpu(monkeypatch):
    monkeypatch.setattr(hardware, "board_model", lambda: "NVIDIA Jetson Nano Developer Kit")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(hardware, "gpu_name", lambda index=0: "NVIDIA Tegra X1")
    device = jetson()
    assert (device.accelerator, device.precision, device.threads) == ("cuda", "fp16", 4)
    assert device.hardware == "NVIDIA Jetson Nano Developer Kit (NVIDIA Tegra X1)"
    assert device.describe()["emulated"] is False


def test_another_jetson_is_not_taken_for_this_one(monkeypatch):
    monkeypatch.setattr(hardware, "board_model", lambda: "NVIDIA Jetson Xavier NX Developer Kit")
    assert "not a Jetson Nano" in jetson().hardware


def test_cpu_profile_pins_threads_and_restores_them():
    cfg = compose_config("train", ["device=cpu", "device.threads=1"])
    device = build(cfg.device)
    before = torch.get_num_threads()
    with device.pinned_threads():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert device.hardware == hardware.cpu_description() and hardware.cpu_name() in device.hardware


def test_fp16_on_cpu_is_refused():
    with pytest.raises(DeviceError, match="fp16"):
        TargetDevice("cpu", "cpu", TorchEagerRuntime(), "fp16")


def test_every_device_option_composes():
    for name in ("cpu", "cuda", "jetson_nano", "jetson_xavier_nx"):
        cfg = compose_config("train", [f"device={name}"])
        assert cfg.device.name == name and cfg.device.batch_size >= 1


def test_the_hardware_names_the_cpus_int8_instructions(tmp_path):
    """What decides whether INT8 pays on a CPU is in the record's `hardware`: the best 8-bit dot-product set."""
    for case, (flags, expected) in enumerate(
        [
            ("fpu sse avx2 avx512f avx512_vnni amx_bf16 amx_int8", "AMX"),
            ("fpu sse avx2 avx512f avx512_vnni", "AVX-512 VNNI"),
            ("fpu sse avx2 avx_vnni", "AVX-VNNI"),
            ("fpu sse avx2", "AVX2"),
            ("fpu neon", None),
        ]
    ):
        cpuinfo = tmp_path / f"cpuinfo{case}"  # a file each: the answer is cached per file
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n")
        assert hardware.cpu_int8_instructions(cpuinfo) == expected, flags
    assert hardware.cpu_int8_instructions(tmp_path / "missing") is None
    found = hardware.cpu_int8_instructions()
    assert hardware.cpu_description().endswith(f", {found})" if found else " logical CPUs)")


@pytest.mark.parametrize("device", ["cpu", "cpu_torch"])
def test_the_host_profiles_measure_at_edgecomp_threads_where_it_is_set(monkeypatch, device):
    monkeypatch.delenv("EDGECOMP_THREADS", raising=False)
    assert build(compose_config("train", [f"device={device}"]).device).threads == 2
    monkeypatch.setenv("EDGECOMP_THREADS", "3")
    assert build(compose_config("train", [f"device={device}"]).device).threads == 3
    assert build(compose_config("train", [f"device={device}", "device.threads=1"]).device).threads == 1
    monkeypatch.setenv("EDGECOMP_THREADS", "null")  # all cores
    assert build(compose_config("train", [f"device={device}"]).device).threads is None


@pytest.mark.parametrize("value", ["0", "two", "1.5"])
def test_a_thread_count_that_is_no_whole_number_is_refused_with_where_it_came_from(monkeypatch, value):
    monkeypatch.setenv("EDGECOMP_THREADS", value)
    with pytest.raises(DeviceError, match=r"device.threads must be a whole number >= 1 or null .*EDGECOMP_THREADS"):
        build(compose_config("train", ["device=cpu"]).device)
