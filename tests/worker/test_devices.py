"""The device allocator: all or nothing, so two jobs of N devices never deadlock on a host."""

from __future__ import annotations

from pathlib import Path

from worker.devices import allocate, host_devices


def test_a_job_takes_all_its_devices_or_none(tmp_path: Path) -> None:
    env = {
        "RPG_DEVICES": "0,1,2",
        "RPG_DEVICE_LOCK_DIR": str(tmp_path),
        "CUDA_VISIBLE_DEVICES": "1",
    }
    host = host_devices(env)
    assert host.devices == ("0", "1", "2") and host.own == "1" and host.kind == "gpu"
    first = allocate(host, 2)
    assert first is not None and first.devices[0] == "1"  # its own device first
    assert first.cuda_visible() == ",".join(first.devices)
    assert allocate(host, 2) is None  # one is free: the second 2-device job holds nothing...
    assert host.free() == 1
    one = allocate(host, 1)  # ...so a 1-device job still gets the free one
    assert one is not None and one.devices[0] not in first.devices
    one.release()
    first.release()
    both = allocate(host, 3)
    assert both is not None and sorted(both.devices) == ["0", "1", "2"]
    both.release()
    assert allocate(host, 4) is None  # more than the host has: never


def test_a_worker_without_rpg_devices_has_its_one_device() -> None:
    host = host_devices({"CUDA_VISIBLE_DEVICES": ""})
    assert host.devices == ("cpu0",) and host.lock_dir is None and host.kind == "cpu"
    alloc = allocate(host, 1)
    assert alloc is not None and alloc.cuda_visible() == ""
    assert allocate(host, 2) is None
