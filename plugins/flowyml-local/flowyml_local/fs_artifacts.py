"""The artifact store on any :class:`~flowyml_local.backends.StoreBackend` (local disk, GCS, any fsspec URL).

Layout (``docs/reference/stores.md``)::

    <root>/<project>/<run_id>/<step>.<name>      one entry per artifact (see flowyml_local.entries)

``uri_for(run, step, name, project)`` is that file. Segments are escaped
(``%`` → ``%25``, ``/`` → ``%2F``, ``\\`` → ``%5C``; in the step also ``.`` →
``%2E``), so the first dot of a file name separates step and name and no
name can leave the root. One file per artifact and no directory per step or
artifact: on a cold run a step costs one file creation and one rename, as
much as any careful hand-written save.

An entry is published at once (temp file + rename, one PUT on object
stores), so a reader sees the previous artifact, the new one or none, and a
kill -9 leaves at most a hidden temp file (``.*.tmp``, removed by
:meth:`FsArtifactStore.prune`). Its header records the materializer, size,
digest (checked before decoding), where it was written (an entry copied over
another one is refused) and, for pickles, a signature.
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping

from flowyml_core.components import ArtifactStore
from flowyml_core.errors import IntegrityError

from flowyml_local import digests
from flowyml_local.backends import EntryReader, EntryReplaced, is_temp_name, retry_replaced
from flowyml_local.buffers import nbytes
from flowyml_local.entries import ARTIFACT_FAMILY, ARTIFACT_MAGIC, head_encoder, read_header
from flowyml_local.fsstore import (REFERENCE_MIN, TEMP_SAFE_AGE, ArtifactNotFoundError, FsStore, file_name,
                                   remember_large, segment, type_name)
from flowyml_local.materializers import Materializer


def entry_name(step_name: str, name: str) -> str:
    """The file name of an artifact in its run's directory: ``<step>.<name>``, escaped."""
    return f"{segment(step_name, 'step name', escape_dots=True)}.{segment(name, 'artifact name')}"


class FsArtifactStore(FsStore, ArtifactStore):
    """Artifact store on a :class:`~flowyml_local.backends.StoreBackend`; see the module docstring for the layout."""

    kind = "artifact_store"


    # -- paths -----------------------------------------------------------------
    def _path(self, run_id: str, step_name: str, name: str, project_name: str) -> str:
        b = self.backend
        return b.join(b.root, segment(project_name, "project name"), segment(run_id, "run id"),
                      entry_name(step_name, name))

    def uri_for(self, run_id: str, step_name: str, name: str, project_name: str = "default") -> str:
        return self.backend.to_uri(self._path(run_id, step_name, name, project_name))

    def _resolve(self, path_or_uri: str) -> str:
        """A backend path from a URI, or from a path relative to the root."""
        b = self.backend
        if "://" in path_or_uri or os.path.isabs(path_or_uri) or (
                b.fs is not None and path_or_uri.startswith(b.root + "/")):
            return b.from_uri(path_or_uri)
        parts = [p for p in path_or_uri.replace("\\", "/").split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ValueError(f"artifact path {path_or_uri!r} must be relative to the store root, without '.' or '..'")
        return b.join(b.root, *parts)

    # -- writing ---------------------------------------------------------------
    def materialize(self, obj: Any, name: str, run_id: str, step_name: str, project_name: str = "default",
                    *, materializer: str | None = None) -> str:
        """Write ``obj`` at ``uri_for(run_id, step_name, name, project_name)`` and return that URI.

        ``materializer`` forces a format by name (``"json"``, ``"bytes"``,
        ``"npy"`` — alias ``"numpy"`` —, ``"parquet"``, ``"pickle"`` or one a
        plugin registered) instead of choosing by type; a format that cannot
        hold ``obj`` is an error. The write is atomic; the entry's header
        records the payload's digest (and a signature for pickle).
        """
        path = self._path(run_id, step_name, name, project_name)
        origin = {"project": project_name, "run": run_id, "step": step_name, "name": name}
        self._write(obj, path, materializer, origin)
        return self.backend.to_uri(path)

    def materialize_at(self, obj: Any, path: str, *, materializer: str | None = None) -> str:
        """Write ``obj`` at ``path`` (relative to the store root, or a URI inside it) and return its URI.

        For routers and path templates; same format choice, atomicity and
        integrity record as :meth:`materialize`.
        """
        target = self._resolve(path)
        self._write(obj, target, materializer, None)
        return self.backend.to_uri(target)

    def _write(self, obj: Any, path: str, materializer: str | None, origin: Mapping[str, str] | None) -> None:
        b = self.backend
        m, buffers, info = self._encode(obj, materializer)
        size = sum(nbytes(x) for x in buffers)
        fields: dict[str, Any] = {"path": b.relative(path), "materializer": m.name, "type": type_name(obj),
                                  "size": size, "created": time.time()}
        if info:
            fields["info"] = info
        if origin:
            fields.update(origin)
        head = head_encoder(ARTIFACT_MAGIC, fields, self._signer_for(m, size))
        digest = b.publish(path, head, buffers, digests.algorithm_for(m.unsafe))
        if size >= REFERENCE_MIN and b.fs is None:
            remember_large(m.name, size, digest, path)

    # -- reading ---------------------------------------------------------------
    def _open(self, path: str, uri: str) -> EntryReader:
        try:
            return self.backend.open_entry(path)
        except (FileNotFoundError, NotADirectoryError):
            raise ArtifactNotFoundError(f"no artifact at {uri} (nothing written there, or the write did not complete)") \
                from None
        except IsADirectoryError:
            raise ArtifactNotFoundError(
                f"no artifact at {uri}: a directory is there (the layout of an earlier flowyml version?); "
                "run the step again to write it"
            ) from None

    def _header(self, reader: EntryReader, uri: str) -> tuple[dict[str, Any], int]:
        try:
            return read_header(reader, ARTIFACT_MAGIC, ARTIFACT_FAMILY)
        except IntegrityError as exc:
            raise IntegrityError(f"{uri}: {exc}; write the artifact again") from None

    def metadata(self, uri: str) -> dict[str, Any]:
        """The header of the artifact at ``uri`` (type, materializer, size, digest, created, run, step…)."""
        with self._open(self._resolve(uri), uri) as reader:
            return self._header(reader, uri)[0]

    def exists(self, uri: str) -> bool:
        return self.backend.is_file(self._resolve(uri))

    def load(self, uri: str) -> Any:
        """Read back what ``materialize`` wrote at ``uri``.

        Raises ArtifactNotFoundError (a FileNotFoundError) when nothing
        complete is there, IntegrityError when the bytes do not match the
        header, UntrustedPickleError for a pickle without a valid signature.
        """
        path = self._resolve(uri)

        def attempt() -> Any:
            with self._open(path, uri) as reader:
                header, offset = self._header(reader, uri)
                m, size, digest = self._checked(header, path, uri)
                try:
                    data = reader.payload(offset, size, digest, m.allocate)
                except EntryReplaced:
                    raise
                except IntegrityError as exc:
                    raise IntegrityError(f"artifact {uri} failed its integrity check: {exc}") from None
            return self._decode(m, data, header, uri)

        try:
            return retry_replaced(attempt)
        except EntryReplaced:
            raise IntegrityError(f"artifact {uri} kept being replaced while it was read; read it again") from None

    def _checked(self, header: Mapping[str, Any], path: str, uri: str) -> tuple[Materializer, int, str]:
        try:
            m_name, size, digest = header["materializer"], header["size"], header["digest"]
        except KeyError as exc:
            raise IntegrityError(f"{uri}: the header lacks {exc.args[0]!r}; it was not written by this flowyml") \
                from None
        if not isinstance(m_name, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise IntegrityError(f"{uri}: the header is malformed")
        m = self.materializers.by_name(m_name)
        try:
            digests.parse(digest, unsafe=m.unsafe)
        except IntegrityError as exc:
            raise IntegrityError(f"{uri}: the header {exc}") from None
        here, written_for = self.backend.relative(path), header.get("path")
        if here is not None and written_for is not None and written_for != here:
            raise IntegrityError(
                f"{uri}: it was written for {written_for!r}, not for this location "
                "(an artifact copied or moved over another one?); write it again"
            )
        self._check_trust(m, header, uri)
        return m, size, digest

    @staticmethod
    def _decode(m: Materializer, data: Any, header: Mapping[str, Any], uri: str) -> Any:
        try:
            return m.load(data, header.get("info"))
        except IntegrityError as exc:
            raise IntegrityError(f"artifact {uri}: {exc}") from None
        except Exception as exc:
            if m.unsafe:  # a trusted pickle that cannot load (a class that moved…) keeps its own error
                raise
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise IntegrityError(
                f"artifact {uri}: its {m.name} payload cannot be decoded ({type(exc).__name__}: {text}); "
                "it was not written by that materializer, or it is damaged"
            ) from exc

    # -- listing & housekeeping ----------------------------------------------------
    def _runs(self) -> tuple[dict[tuple[str, str], list[tuple[str, int, float | None]]], list[tuple[str, int, float | None]]]:
        """Files of each ``(project, run)`` directory, and the temp files, under the root."""
        b = self.backend
        runs: dict[tuple[str, str], list[tuple[str, int, float | None]]] = {}
        temps = []
        for path, size, age in b.walk(b.root):
            name = file_name(path)
            if is_temp_name(name):
                temps.append((path, size, age))
                continue
            parts = (b.relative(path) or "").split("/")
            if len(parts) == 3 and not name.startswith(".") and "." in name:
                runs.setdefault((parts[0], parts[1]), []).append((path, size, age))
        return runs, temps

    def list_artifacts(self, run_id: str | None = None, step_name: str | None = None,
                       project_name: str | None = None) -> list[str]:
        """URIs of the artifacts under the root, optionally of one project/run/step."""
        b = self.backend
        base = b.root
        for value, what in ((project_name, "project name"), (run_id, "run id")):
            if value is None:
                break
            base = b.join(base, segment(value, what))
        step = segment(step_name, "step name", escape_dots=True) if step_name is not None else None
        found = []
        for path, _, _ in b.walk(base):
            parts = (b.relative(path) or "").split("/")
            if len(parts) != 3 or parts[2].startswith(".") or "." not in parts[2]:
                continue
            if (project_name is None or parts[0] == segment(project_name, "")) and \
                    (run_id is None or parts[1] == segment(run_id, "")) and \
                    (step is None or parts[2].partition(".")[0] == step):
                found.append(b.to_uri(path))
        return sorted(found)

    def prune(self, older_than: float | None = None, keep_runs: int | None = None, *,
              dry_run: bool = False) -> dict[str, Any]:
        """Free storage; returns what was (``dry_run``: would be) removed and how many bytes.

        Always: temp files of interrupted writes (kill -9, a full disk) older
        than :data:`~flowyml_local.fsstore.TEMP_SAFE_AGE` (younger ones may be
        writes in progress). ``older_than`` (seconds): the artifacts of runs
        whose newest artifact is older. ``keep_runs``: keep the artifacts of
        the ``keep_runs`` newest runs of each project, whatever their age (alone:
        remove every older run). Cache entries that referred to removed
        artifacts become misses; the cache store's prune removes them.
        """
        b = self.backend
        runs, temps = self._runs()
        removed = {"temp files": 0, "runs": 0, "artifacts": 0}
        freed = 0
        for path, size, age in temps:
            if age is not None and age >= TEMP_SAFE_AGE and (dry_run or b.delete(path)):
                removed["temp files"] += 1
                freed += size
        if older_than is not None or keep_runs is not None:
            by_project: dict[str, list[tuple[float, str, list[tuple[str, int, float | None]]]]] = {}
            for (project, run), files in runs.items():
                newest = min((age for _, _, age in files if age is not None), default=float("inf"))
                by_project.setdefault(project, []).append((newest, run, files))
            for project, items in by_project.items():
                items.sort(key=lambda item: (item[0], item[1]))
                for index, (newest, run, files) in enumerate(items):
                    if keep_runs is not None and index < keep_runs:
                        continue
                    if older_than is not None and newest < older_than:
                        continue
                    if not self._is_run(files, run):
                        continue
                    if dry_run or b.delete_tree(b.join(b.root, project, run)):
                        removed["runs"] += 1
                        removed["artifacts"] += len(files)
                        freed += sum(size for _, size, _ in files)
        return {"removed": {k: v for k, v in removed.items() if v}, "bytes": freed, "dry_run": dry_run}

    def _is_run(self, files: list[tuple[str, int, float | None]], run_dir: str) -> bool:
        """Whether a directory holds a run's artifacts (written by ``materialize``), not routed files."""
        path = files[0][0]
        try:
            with self.backend.open_entry(path) as reader:
                header = read_header(reader, ARTIFACT_MAGIC, ARTIFACT_FAMILY)[0]
        except (OSError, IntegrityError):
            return False
        run = header.get("run")
        return isinstance(run, str) and run not in ("", ".", "..") and segment(run, "run id") == run_dir

    def delete(self, uri: str) -> bool:
        """Remove an artifact."""
        return self.backend.delete(self._resolve(uri))
