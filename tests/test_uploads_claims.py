"""Claims of direct uploads on S3 whose holder dies or stalls: released by age, never losing an attached file.

An S3 claim is held for a few requests (the claim object
``.depot-pending/.claims/<id>``, created with ``If-None-Match: *``).  A
process killed while holding it is played by a real subprocess and
SIGKILL; a holder still working is played by a hook inside the claim,
which runs ``collect_pending`` with a clock just under, or just over,
:data:`~depot.uploads.intents.CLAIM_TIMEOUT`.  Both S3 servers of the
tests honour the conditional writes (SeaweedFS, moto).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional

import pytest

pytest.importorskip("boto3")

from depot.io._pending_objects import CLAIMS_DIR, marker_name  # noqa: E402
from depot.manager import DepotManager  # noqa: E402
from depot.uploads import collect_pending, create_upload_intent  # noqa: E402
from depot.uploads._api import claim_upload  # noqa: E402
from depot.uploads.intents import CLAIM_TIMEOUT, PendingUpload, claimed  # noqa: E402
from tests.servers import unique_name  # noqa: E402

SERVERS = {"seaweed": "seaweedfs_server", "moto": "moto_server"}


def s3_settings(server: Any, bucket: str) -> Dict[str, str]:
    return {
        "depot.backend": "depot.io.boto3.S3Storage",
        "depot.access_key_id": server.access_key,
        "depot.secret_access_key": server.secret_key,
        "depot.endpoint_url": server.endpoint_url,
        "depot.region_name": server.region,
        "depot.bucket": bucket,
    }


@pytest.fixture(params=sorted(SERVERS))
def s3(request) -> Dict[str, str]:
    """The settings of an empty S3 storage ``cloud``, configured in this process too."""
    settings = s3_settings(request.getfixturevalue(SERVERS[request.param]), unique_name("claims"))
    DepotManager.configure("cloud", settings)
    return settings


def uploaded(expires_in: int = 3600) -> PendingUpload:
    """An intent of ``cloud`` whose file the browser uploaded (written as the service would)."""
    storage = DepotManager.get("cloud")
    intent = create_upload_intent("cloud", max_size=100, expires_in=expires_in, method="PUT")
    storage._store_at(intent.file_id, b"the upload", "up.txt", "text/plain")
    return PendingUpload.from_json(storage._pending_get(intent.file_id))


def claims() -> Dict[str, float]:
    """``{file_id: created}`` of the claim objects of ``cloud``."""
    storage = DepotManager.get("cloud")
    return {name[len(CLAIMS_DIR):]: modified for name, modified in storage._raw_list(CLAIMS_DIR)}


def record_of(file_id: str) -> Optional[PendingUpload]:
    raw = DepotManager.get("cloud")._pending_get(file_id)
    return None if raw is None else PendingUpload.from_json(raw)


# The claim in a process of its own, stopped for good inside the claim: the
# hook blocks the request named by argv[2] (on argv[3]'s key) forever.
_HOLDER = """
import json, sys, time
from depot.manager import DepotManager
from depot.uploads._api import claim_upload
from depot.uploads.intents import PendingUpload

settings, operation, key = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
storage = DepotManager.configure("cloud", settings)
record = PendingUpload.from_json(storage._pending_get(sys.argv[4]))

def hold(params, **kwargs):
    if params.get("Key") == storage._bucket_driver.prefix + key:
        print("holding", flush=True)
        time.sleep(600)

storage._client.meta.events.register("before-parameter-build.s3." + operation, hold)
claim_upload(storage, record)
print("claim ended", flush=True)
"""


def kill_while_holding(settings: Dict[str, str], record: PendingUpload, operation: str, key: str) -> None:
    """Claim ``record`` in a subprocess and SIGKILL it at ``operation`` on ``key``, the claim object held."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, json.dumps(settings), operation, key, record.file_id],
                              stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "holding\n"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert holder.returncode == -signal.SIGKILL


def test_a_claim_killed_before_the_marker_is_released_by_age(s3):
    """Killed between the claim object and the marker's rewrite: un-attachable until gc releases the claim."""
    storage = DepotManager.get("cloud")
    record = uploaded()
    kill_while_holding(s3, record, "GetObject", marker_name(record.file_id))
    held_since = claims()[record.file_id]
    assert not claimed(storage._pending_get(record.file_id))
    assert claim_upload(storage, record) is False  # stuck: every claim is refused

    # Younger than the bound: the holder may still be at work, nothing changes.
    assert collect_pending("cloud", older_than=0, now=held_since + CLAIM_TIMEOUT - 30) == []
    assert list(claims()) == [record.file_id]
    # Older: released.  The intent is still valid, so the upload stays and
    # can be attached again.
    assert collect_pending("cloud", older_than=0, now=held_since + CLAIM_TIMEOUT + 30) == []
    assert claims() == {}
    assert storage.get(record.file_id).read() == b"the upload"
    assert claim_upload(storage, record) is True
    assert record_of(record.file_id).claimed_at is not None


def test_a_killed_claim_of_an_expired_upload_is_collected(s3):
    """A pending marker behind a dead claim names an upload never attached: collected once released."""
    storage = DepotManager.get("cloud")
    record = uploaded(expires_in=1)
    kill_while_holding(s3, record, "GetObject", marker_name(record.file_id))
    held_since = claims()[record.file_id]
    later = max(held_since + CLAIM_TIMEOUT, record.expires_at + 2 * 3600) + 30
    assert collect_pending("cloud", older_than=0, now=later) == [record.file_id]
    assert claims() == {} and list(storage._pending_list()) == []
    assert not storage.exists(record.file_id)


def test_a_claim_killed_after_the_marker_keeps_the_file(s3):
    """Killed after the claimed marker was written: the upload may be attached, its file is never deleted."""
    storage = DepotManager.get("cloud")
    record = uploaded(expires_in=1)
    kill_while_holding(s3, record, "DeleteObject", CLAIMS_DIR + record.file_id)
    held_since = claims()[record.file_id]
    assert claimed(storage._pending_get(record.file_id))
    later = max(held_since + CLAIM_TIMEOUT, record.expires_at + 2 * 3600) + 30
    assert collect_pending("cloud", older_than=0, now=later) == []
    # The claim and the claimed marker went (fsck judges the file from the
    # rows now); the file stayed.
    assert claims() == {} and list(storage._pending_list()) == []
    assert storage.get(record.file_id).read() == b"the upload"


def during_claim(operation: str, key: str, action: Callable[[], None]) -> None:
    """Run ``action`` once, when the claim in this process sends ``operation`` on ``key``."""
    storage = DepotManager.get("cloud")
    done: List[bool] = []

    def hook(params, **kwargs):
        if not done and params.get("Key") == storage._bucket_driver.prefix + key:
            done.append(True)
            action()

    storage._client.meta.events.register("before-parameter-build.s3." + operation, hook)


def test_gc_leaves_an_attach_in_progress_just_under_the_bound(s3):
    """A claim held for just under CLAIM_TIMEOUT is still at work: gc neither releases it nor collects."""
    storage = DepotManager.get("cloud")
    record = uploaded(expires_in=1)
    collected: List[List[str]] = []

    def gc() -> None:
        now = claims()[record.file_id] + CLAIM_TIMEOUT - 5
        # grace=0: the collection takes the intent for long expired.
        collected.append(collect_pending("cloud", older_than=0, now=now, grace=0))
        assert list(claims()) == [record.file_id]

    during_claim("GetObject", marker_name(record.file_id), gc)
    assert claim_upload(storage, record) is True
    assert collected == [[]]
    assert claimed(storage._pending_get(record.file_id)) and claims() == {}
    assert storage.get(record.file_id).read() == b"the upload"


def test_an_attach_stalled_past_the_bound_loses_to_gc(s3):
    """Stalled past CLAIM_TIMEOUT after reading the marker: gc releases the claim and collects, the attach loses.

    The marker is rewritten only at the version read, so the stalled
    holder cannot write a claimed marker over the collection's: no row
    can reference the file gc deleted.
    """
    storage = DepotManager.get("cloud")
    record = uploaded(expires_in=1)
    collected: List[List[str]] = []

    def gc() -> None:
        now = claims()[record.file_id] + CLAIM_TIMEOUT + 5
        collected.append(collect_pending("cloud", older_than=0, now=now, grace=0))

    during_claim("PutObject", marker_name(record.file_id), gc)
    assert claim_upload(storage, record) is False
    assert collected == [[record.file_id]]
    assert not storage.exists(record.file_id)
    assert storage._pending_get(record.file_id) is None and claims() == {}


def test_a_failed_request_does_not_leave_the_claim_held(s3):
    """An error inside the claim (a connection lost) still deletes the claim object: nothing stays stuck."""
    storage = DepotManager.get("cloud")
    record = uploaded()

    def lost() -> None:
        raise ConnectionError("connection lost")

    during_claim("GetObject", marker_name(record.file_id), lost)
    with pytest.raises(ConnectionError):
        claim_upload(storage, record)
    assert claims() == {}
    assert claim_upload(storage, record) is True


def test_claims_are_no_files_nor_markers(s3):
    """A claim object is never listed as a file or a pending upload."""
    storage = DepotManager.get("cloud")
    record = uploaded()
    seen: List[Any] = []
    during_claim("GetObject", marker_name(record.file_id),
                 lambda: seen.append((storage.list(), [i for i, _ in storage._pending_list()], list(claims()))))
    assert claim_upload(storage, record) is True
    assert seen == [([record.file_id], [record.file_id], [record.file_id])]


def test_an_expired_attach_never_deletes_an_upload_another_attach_claimed(s3, monkeypatch):
    """finish_upload deleting an expired upload races an attach that checked it in time and claims late.

    The late attach's claim wins (nothing had claimed the marker), its row
    may be committed: the expired request must not delete the file.
    """
    from depot.uploads import UploadRefused, finish_upload

    storage = DepotManager.get("cloud")
    record = uploaded()
    real_get = storage._pending_get
    won: List[bool] = []

    def read_then_other_attach_claims(file_id: str) -> Optional[bytes]:
        raw = real_get(file_id)
        if not won:
            won.append(claim_upload(storage, record))
        return raw

    monkeypatch.setattr(storage, "_pending_get", read_then_other_attach_claims)
    with pytest.raises(UploadRefused) as refused:
        finish_upload("cloud", record.file_id, grace=-2 * 3600)  # expired for this request
    assert refused.value.code == "expired"
    assert won == [True]
    assert claimed(real_get(record.file_id))
    assert storage.get(record.file_id).read() == b"the upload"


def test_gc_releases_claims_as_it_lists_them(s3, monkeypatch):
    """Bounded memory: each old claim is released as the listing yields it, not after listing them all."""
    import uuid

    storage = DepotManager.get("cloud")
    for _ in range(3):
        assert storage._raw_create(CLAIMS_DIR + str(uuid.uuid4()), b"") is True
    later = max(claims().values()) + CLAIM_TIMEOUT + 30
    events: List[str] = []
    real_list, real_delete = storage._raw_list, storage._raw_delete

    def listing(under: str):
        for item in real_list(under):
            if under == CLAIMS_DIR:
                events.append("listed")
            yield item
        if under == CLAIMS_DIR:
            events.append("end")

    def delete(name: str) -> None:
        events.append("released")
        real_delete(name)

    monkeypatch.setattr(storage, "_raw_list", listing)
    monkeypatch.setattr(storage, "_raw_delete", delete)
    assert collect_pending("cloud", older_than=0, now=later) == []
    assert events == ["listed", "released"] * 3 + ["end"]
    assert claims() == {}


def test_a_won_claim_stands_when_deleting_the_claim_object_fails(s3):
    """The marker was rewritten: an error deleting the claim object must not make the attach fail.

    Raised, it would leave a claimed marker no attach can ever claim again:
    the upload could never be attached.  The claim object stays instead,
    and gc releases it by age; the file is kept.
    """
    storage = DepotManager.get("cloud")
    record = uploaded()

    def lost() -> None:
        raise ConnectionError("connection lost")

    during_claim("DeleteObject", CLAIMS_DIR + record.file_id, lost)
    assert claim_upload(storage, record) is True
    assert claimed(storage._pending_get(record.file_id))
    held_since = claims()[record.file_id]
    assert collect_pending("cloud", older_than=10 * CLAIM_TIMEOUT, now=held_since + CLAIM_TIMEOUT + 30) == []
    assert claims() == {} and claimed(storage._pending_get(record.file_id))
    assert storage.get(record.file_id).read() == b"the upload"


def resend_once(key: str) -> List[int]:
    """Make botocore send the PutObject of ``key`` again once it succeeded: an answer lost on the way back.

    botocore retries a PutObject whose connection broke after the request
    was sent; the first write landed, the second meets its own object.
    """
    storage = DepotManager.get("cloud")
    resent: List[int] = []

    def again(request_dict, response=None, **kwargs):
        url = request_dict["url"].split("?", 1)[0]
        if not resent and response is not None and url.endswith("/" + storage._bucket_driver.prefix + key):
            resent.append(response[0].status_code)
            return 0  # retry at once
        return None

    storage._client.meta.events.register_first("needs-retry.s3.PutObject", again)
    return resent


@pytest.mark.parametrize("key", ["claim", "marker"])
def test_a_conditional_write_resent_after_a_lost_answer_still_wins(s3, key):
    """The resent write fails its own condition (412): the claim checks whether the first one landed.

    Else the claim object would be left behind (every claim refused for
    CLAIM_TIMEOUT) or the marker left claimed by a claim reported lost (an
    upload never attached, its file kept until fsck deletes it).
    """
    storage = DepotManager.get("cloud")
    record = uploaded()
    resent = resend_once(CLAIMS_DIR + record.file_id if key == "claim" else marker_name(record.file_id))
    assert (claim_upload(storage, record), resent) == (True, [200])
    assert claimed(storage._pending_get(record.file_id)) and claims() == {}


@pytest.mark.parametrize("key", ["claim", "marker"])
def test_a_conditional_write_whose_answer_never_came_still_wins(s3, key):
    """The write landed but the request ended in an error (retries run out): judged by what was written."""
    storage = DepotManager.get("cloud")
    record = uploaded()
    path = "/" + storage._bucket_driver.prefix + (CLAIMS_DIR + record.file_id if key == "claim"
                                                  else marker_name(record.file_id))
    lost: List[str] = []

    def answer_lost(http_response, **kwargs):
        if not lost and http_response.url.split("?", 1)[0].endswith(path):
            lost.append(path)
            raise ConnectionError("connection lost after the request was sent")

    storage._client.meta.events.register("after-call.s3.PutObject", answer_lost)
    assert (claim_upload(storage, record), lost) == (True, [path])
    assert claimed(storage._pending_get(record.file_id)) and claims() == {}
