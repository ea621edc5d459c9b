"""Object stores: CheckpointStore, tpde.dcp and tpde-pack against a local S3 server (moto on
127.0.0.1), with storage_options; request and object counts; one-line storage errors."""

from __future__ import annotations

import gc
import logging
import re
import socket
import threading
import time
import uuid
import warnings

import pytest
import torch

import tpde
import tpde.dcp
from tpde.cli.main import main as tpde_pack

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")
pytest.importorskip("s3fs")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")
_REQUEST = re.compile(r'"(GET|PUT|HEAD|DELETE|POST) ')


class _RequestLog(logging.Handler):
    """Counts the HTTP requests the S3 server answers, by method."""

    def __init__(self):
        super().__init__()
        self.counts: dict[str, int] = {}

    def emit(self, record):
        m = _REQUEST.search(record.getMessage())
        if m:
            self.counts[m.group(1)] = self.counts.get(m.group(1), 0) + 1

    def total(self) -> int:
        return sum(self.counts.values())


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on a free loopback port; yields (endpoint, request log)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    earlier = set(threading.enumerate())
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    log = _RequestLog()
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.addHandler(log)
    werkzeug.setLevel(logging.INFO)
    werkzeug.propagate = False
    try:
        yield f"http://127.0.0.1:{port}", log
        left = _lease_threads_left(earlier)  # while the server still answers their releases
    finally:
        werkzeug.removeHandler(log)
        server.stop()
    assert not left, f"a test left a writer store open (its lease heartbeat outlives the server): {left}"


def _lease_threads_left(earlier: set, wait_s: float = 20.0) -> list[str]:
    """Lease heartbeats started since `earlier` that are still running after the collector
    has finalized dropped stores and their releases (on threads of their own) had `wait_s`
    to finish; a store left open keeps its heartbeat however long this waits."""
    from tpde.store import lease_share

    gc.collect()
    lease_share.release_deferred()
    deadline = time.monotonic() + wait_s
    while True:
        left = [t for t in threading.enumerate() if t.name == "tpde-lease" and t not in earlier]
        if not left or time.monotonic() > deadline:
            return [getattr(t, "store", "?") for t in left]
        time.sleep(0.1)


@pytest.fixture
def bucket(s3_server):
    """A fresh bucket; yields (name, storage_options, request log, boto3 client)."""
    endpoint, log = s3_server
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    name = f"b{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    options = {"key": "testing", "secret": "testing", "endpoint_url": endpoint,
               "client_kwargs": {"region_name": "us-east-1"}}
    return name, options, log, client


def objects(client, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def states(n: int = 3) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 48, generator=g)
    out = []
    for i in range(n):
        w = w + 0.01 * torch.randn(64, 48, generator=g)
        out.append({"model": {"w": w.clone(), "b": torch.full((48,), float(i))}, "epoch": i})
    return out


def test_checkpoint_store_on_s3(bucket):
    name, options, log, client = bucket
    url = f"s3://{name}/run"
    store = tpde.CheckpointStore(url, storage_options=options, chunk_elements=512)
    saved = states(3)
    before = dict(log.counts)
    store.save(0, saved[0])
    first = {k: v - before.get(k, 0) for k, v in log.counts.items()}
    before = dict(log.counts)
    store.save(1, saved[1])
    second = {k: v - before.get(k, 0) for k, v in log.counts.items()}
    store.save(2, saved[2])
    print(f"\nrequests of one save: keyframe {first}, delta {second}")
    # 2 tensors: chunks + .zarray each, step .zgroup/.zattrs, commit marker, a few listings
    assert second.get("PUT", 0) == len(objects(client, name, "run/steps/1/")) + 1
    assert sum(second.values()) < 40
    again = tpde.CheckpointStore(url, mode="r", storage_options=options)
    assert again.steps() == [0, 1, 2]
    for step, state in enumerate(saved):
        got = again.load(step)
        assert torch.equal(got["model"]["w"], state["model"]["w"]) and got["epoch"] == step
    rows = again.load_tensor(2, "model/w", (slice(8, 16),))
    assert torch.equal(rows, saved[2]["model"]["w"][8:16])
    assert again.verify() == []
    store.keyframe_every = 2
    store.save(3, saved[0])  # a keyframe: steps 0-2 become prunable
    assert store.prune(keep_last=1) == [0, 1, 2]
    assert tpde.CheckpointStore(url, mode="r", storage_options=options).steps() == [3]
    assert objects(client, name, "run/steps/0/") == []
    store.close()  # its lease heartbeat would outlive the server (and retry with jitter from `random`)


def test_dcp_writer_and_reader_on_s3(bucket):
    name, options, _, client = bucket
    url = f"s3://{name}/dcp"
    import torch.distributed.checkpoint as dcp

    saved = states(3)
    writer = tpde.dcp.Writer(url, storage_options=options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step, state in enumerate(saved):
            dcp.save({"model": state["model"]}, storage_writer=writer, checkpoint_id=step, no_dist=True)
    assert tpde.dcp.steps(url, storage_options=options) == [0, 1, 2]
    for step, state in enumerate(saved):
        target = {"model": {"w": torch.zeros(64, 48), "b": torch.zeros(48)}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcp.load(target, storage_reader=tpde.dcp.Reader(url, step=step, storage_options=options), no_dist=True)
        assert torch.equal(target["model"]["w"], state["model"]["w"])
        assert torch.equal(target["model"]["b"], state["model"]["b"])
    partial = {"model": {"w": torch.zeros(64, 48)}}  # only what the destination holds is read
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(partial, storage_reader=tpde.dcp.Reader(url, storage_options=options), no_dist=True)
    assert torch.equal(partial["model"]["w"], saved[2]["model"]["w"])
    assert tpde.dcp.verify(url, storage_options=options) == []
    assert tpde.dcp.prune(url, keep_last=1, storage_options=options) == []  # one chain: all needed
    writer.close()
    assert len(objects(client, name, "dcp/commits/")) == 3


def test_dcp_object_count_per_step_with_thousands_of_small_tensors(bucket, tmp_path):
    name, options, log, client = bucket
    import torch.distributed.checkpoint as dcp

    state = {"model": {f"layers.{i}.norm.weight": torch.full((16,), float(i)) for i in range(3000)}}
    state["model"]["embed.weight"] = torch.randn(512, 256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # one array per tensor (packing and bundles off), on a local folder: the same objects, faster
        with tpde.dcp.Writer(tmp_path / "unpacked", pack_below=0, bundle_below=0) as writer:
            dcp.save(state, storage_writer=writer, checkpoint_id=1, no_dist=True)
        before = log.total()
        with tpde.dcp.Writer(f"s3://{name}/packed", storage_options=options) as writer:
            dcp.save(state, storage_writer=writer, checkpoint_id=1, no_dist=True)
        requests = log.total() - before
    unpacked = sum(1 for p in (tmp_path / "unpacked").rglob("*") if p.is_file())
    packed = len(objects(client, name, "packed/"))
    print(f"\nobjects for one step of 3001 tensors: {unpacked} one array per tensor, {packed} packed "
          f"({requests} requests)")
    assert unpacked > 6000
    assert packed < 20 and requests < 60


def test_checkpoint_store_object_count_per_step_with_thousands_of_small_tensors(bucket, tmp_path):
    name, options, log, client = bucket
    state = {"model": {f"layers.{i}.norm.weight": torch.full((16,), float(i)) for i in range(3000)}}
    state["model"]["embed.weight"] = torch.randn(512, 256)
    with tpde.CheckpointStore(tmp_path / "own", bundle_below=0) as own:  # one array per tensor, locally
        own.save(1, state)
    own = sum(1 for p in (tmp_path / "own" / "steps").rglob("*") if p.is_file())
    store = tpde.CheckpointStore(f"s3://{name}/bundled", storage_options=options)
    store.save(0, state)
    before = log.total()
    store.save(1, {"model": {k: v + 1 for k, v in state["model"].items()}})
    save_requests = log.total() - before
    bundled = len(objects(client, name, "bundled/steps/1/"))
    before = log.total()
    got = tpde.CheckpointStore(f"s3://{name}/bundled", mode="r", storage_options=options).load(1)
    load_requests = log.total() - before
    assert torch.equal(got["model"]["layers.7.norm.weight"], state["model"]["layers.7.norm.weight"] + 1)
    print(f"\nobjects for one step of 3001 tensors: {own} one array per tensor, {bundled} bundled "
          f"({save_requests} requests to save, {load_requests} to load)")
    assert own > 6000
    assert bundled < 10 and save_requests < 40 and load_requests < 40
    store.close()


def test_storage_errors_are_one_line_naming_the_url(bucket, capsys):
    name, options, _, _ = bucket
    missing = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/run"
    with pytest.raises(tpde.TPDEError) as info:
        tpde.CheckpointStore(missing, storage_options=options).save(1, {"w": torch.zeros(3)})
    assert info.value.code == "storage" and missing.removeprefix("s3://") in str(info.value)
    assert "\n" not in str(info.value)
    closed = dict(options, endpoint_url="http://127.0.0.1:9", config_kwargs={"retries": {"max_attempts": 1}})
    with pytest.raises(tpde.TPDEError) as info:
        tpde.CheckpointStore(f"s3://{name}/run", storage_options=closed)
    assert info.value.code == "storage" and f"{name}/run" in str(info.value) and "\n" not in str(info.value)
    assert "connect" in str(info.value).lower()
    with pytest.raises(tpde.TPDEError) as info:
        tpde.dcp.steps(f"s3://{name}/run", storage_options=closed)
    assert info.value.code == "storage" and "\n" not in str(info.value)
    # the CLI: one line on stderr, exit status 1, no traceback
    args = ["ls", f"s3://{name}/run", "--storage-option", "endpoint_url=http://127.0.0.1:9",
            "--storage-option", "key=testing", "--storage-option", "secret=testing",
            "--storage-option", 'config_kwargs={"retries": {"max_attempts": 1}}']
    assert tpde_pack(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tpde-pack: error: cannot read") and f"{name}/run" in err
    assert "Traceback" not in err


def test_permission_error_is_one_line():
    from zarr.storage import MemoryStore

    class Denied(MemoryStore):
        async def set(self, key, value, byte_range=None):
            raise PermissionError("Access Denied")

        def set_sync(self, key, value):
            raise PermissionError("Access Denied")

    with pytest.raises(tpde.TPDEError) as info:
        tpde.CheckpointStore(Denied())
    assert info.value.code == "storage" and "permission denied" in str(info.value)
    assert isinstance(info.value, OSError) and "\n" not in str(info.value)


def test_cli_storage_option(bucket, capsys):
    name, options, _, _ = bucket
    url = f"s3://{name}/cli"
    store = tpde.CheckpointStore(url, storage_options=options)
    for step, state in enumerate(states(2)):
        store.save(step, state)
    store.close()
    pairs = (("key", "testing"), ("secret", "testing"), ("endpoint_url", options["endpoint_url"]),
             ("client_kwargs", '{"region_name": "us-east-1"}'))
    flags = [x for k, v in pairs for x in ("--storage-option", f"{k}={v}")]
    assert tpde_pack(["ls", url, *flags]) == 0
    out = capsys.readouterr().out
    assert "2 step(s)" in out and "keyframe" in out and "delta" in out
    assert tpde_pack(["verify", url, *flags]) == 0
    assert tpde_pack(["ls", url, "--storage-option", "novalue"]) == 1
    assert "bad --storage-option 'novalue'" in capsys.readouterr().err
