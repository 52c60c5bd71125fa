"""The content-addressed object store: version sources by their sha256.

``objects/<sha[:2]>/<sha>`` holds the UTF-8 text of one source. The name is
the content's hash, so storing is idempotent (a second put of the same source
finds the object and writes nothing) and every load can be checked: the bytes
are re-hashed and an object that no longer matches its name raises
:class:`~snapshots.errors.IntegrityError` instead of being returned. A daemon
that would exec a stored source must never exec one altered on disk.

The bytes of an object are exactly the bytes hashed, so the format number
cannot live inside it; it lives in ``objects/FORMAT``, written when the
directory is set up (:meth:`VersionStore.ensure_format`).

Objects are written before any state that refers to them, so after a crash the
state never names an object that was not completely stored. Version metadata
lives in state.json (see :mod:`snapshots.versions` for why);
:meth:`VersionStore.get` and :meth:`VersionStore.history` join the two.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from . import _atomic
from .errors import IntegrityError, ObjectMissing, SnapshotError, UnknownVersion
from .state import StateStore
from .versions import Version, source_sha

# History of OBJECT_FORMAT:
#   1 — first format: the raw UTF-8 source at objects/<sha[:2]>/<sha>, sha = sha256 of those bytes.
OBJECT_FORMAT = 1
OBJECTS_DIR = "objects"
FORMAT_FILE = "FORMAT"
TEMP_PREFIX = "object"
_SHA = re.compile(r"[0-9a-f]{64}")


class VersionStore:
    """Sources under ``<root>/objects``, metadata from ``<root>/state.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / OBJECTS_DIR
        self._state = StateStore(root)

    def ensure_format(self) -> None:
        """Write ``objects/FORMAT`` if it is missing; SnapshotError if it names another format."""
        marker = self.objects / FORMAT_FILE
        try:
            if not marker.exists():
                self.objects.mkdir(parents=True, exist_ok=True)
                _atomic.write_atomic(marker, f"{OBJECT_FORMAT}\n".encode("ascii"),
                                     prefix=TEMP_PREFIX, crash_prefix="object")
                return
            found = marker.read_text(encoding="ascii", errors="replace").strip()
        except OSError as exc:
            raise SnapshotError(f"cannot set up {marker}: {exc}") from exc
        if found != str(OBJECT_FORMAT):
            raise SnapshotError(f"{self.objects} holds object format {found!r}, but this selfmod "
                                f"reads format {OBJECT_FORMAT}: run the release that wrote it, "
                                "or give this one a fresh --state-dir")

    def object_path(self, sha: str) -> Path:
        """Where the object named ``sha`` lives (whether or not it exists)."""
        if not _SHA.fullmatch(sha):
            raise ObjectMissing(f"{sha!r} is not a sha256 in lowercase hex")
        return self.objects / sha[:2] / sha

    def put_source(self, source: str) -> str:
        """Store ``source`` atomically (a no-op if already stored intact); return its sha."""
        sha = source_sha(source)
        path = self.object_path(sha)
        try:
            self._read_verified(path, sha)
            return sha
        except ObjectMissing:
            pass
        except IntegrityError:
            pass  # a damaged copy is replaced by the good one we hold
        try:
            if not path.parent.is_dir():
                path.parent.mkdir(parents=True, exist_ok=True)
                _atomic.fsync_dir(self.objects)
            _atomic.write_atomic(path, source.encode("utf-8"),
                                 prefix=TEMP_PREFIX, crash_prefix="object")
        except OSError as exc:
            raise SnapshotError(f"cannot store object {path}: {exc}") from exc
        return sha

    def get_source(self, sha: str) -> str:
        """The source stored under ``sha``; IntegrityError if it no longer hashes to ``sha``."""
        return self._read_verified(self.object_path(sha), sha)

    def get(self, version_id: str) -> Version:
        """The version ``version_id`` with its verified source."""
        state = self._state.load()
        try:
            record = state.versions[version_id]
        except KeyError:
            raise UnknownVersion(f"no version {version_id} in {self._state.path}") from None
        return Version.from_record(record, self.get_source(version_id))

    def history(self) -> list[Version]:
        """Every version with its verified source, newest first.

        One tampered object makes this raise IntegrityError. For a listing
        that must survive that (``selfmod history``), use
        ``StateStore(root).load().history()``, which reads no sources.
        """
        return [Version.from_record(record, self.get_source(record.id))
                for record in self._state.load().history()]

    def remove_temps(self) -> list[Path]:
        """Delete temporary files a crashed put left (only the state directory's owner may)."""
        removed: list[Path] = []
        if self.objects.is_dir():
            removed += _atomic.remove_temps(self.objects, TEMP_PREFIX)
            for sub in self.objects.iterdir():
                if sub.is_dir():
                    removed += _atomic.remove_temps(sub, TEMP_PREFIX)
        return removed

    @staticmethod
    def _read_verified(path: Path, sha: str) -> str:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(f"no object {sha} ({path})") from None
        except OSError as exc:
            raise SnapshotError(f"cannot read object {path}: {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha:
            raise IntegrityError(path, expected=sha, actual=actual)
        return data.decode("utf-8")
