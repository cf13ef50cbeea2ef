"""The TVB face: TVB's ``HDF5StorageManager`` and ``FilesHelper`` over a hoard repository.

Code written against tvb-storage ports by changing one import:

    from hoard.tvb import HDF5StorageManager, MissingDataSetException

    storage = HDF5StorageManager("PROJECTS/p/7/TimeSeries_ab.h5")   # a path in the repository
    storage.append_data(block, "data", grow_dimension=0, close_file=False)
    storage.close_file()

Method names, signatures, defaults and exceptions are TVB's (tvb-storage 2.10). What TVB
does by accident is fixed, as the daemon does: ``where`` and the dataset name are joined as
paths; ``None`` and 0-d values survive a round trip; ``set_metadata`` on a missing dataset
raises :class:`MissingDataSetException` instead of creating a float dataset. Appends with
``close_file=False`` go to a batching :class:`~hoard.appender.Appender` and become durable
on ``close_file()`` or on the next call with ``close_file=True``.

The exceptions carry TVB's names and are also the SDK's: a :class:`MissingDataFileException`
is a :class:`~hoard.errors.DatasetFileNotFoundError` and a ``FileNotFoundError``.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import threading
from collections.abc import Iterable, Iterator
from typing import IO, Any

import numpy as np

from hoard import errors
from hoard.appender import Appender
from hoard.client import Client, connect
from hoard.datasets import Datasets

__all__ = [
    "FileMigrationException",
    "FileStorageException",
    "FileStructureException",
    "FileVersioningException",
    "FilesHelper",
    "HDF5StorageManager",
    "IncompatibleFileManagerException",
    "MissingDataFileException",
    "MissingDataSetException",
    "RenameWhileSyncEncryptingException",
    "TVBException",
    "UnsupportedFileStorageException",
]


# -- TVB's exceptions --------------------------------------------------------------------------


class TVBException(errors.HoardError):
    """Base of TVB's storage exceptions (TVB's ``tvb.basic.exceptions.TVBException``)."""


class FileStructureException(TVBException):
    """A problem with the structure of files and folders (or a node of a file)."""


class FileStorageException(TVBException):
    """Storing or reading data in a file failed."""


class MissingDataSetException(FileStorageException, errors.DatasetNotFoundError):
    """No dataset of that name in the file (also a ``KeyError``)."""


class MissingDataFileException(FileStorageException, errors.DatasetFileNotFoundError):
    """The file does not exist (also a ``FileNotFoundError``)."""


class FileVersioningException(TVBException):
    """Base of the file-version conversion exceptions."""


class IncompatibleFileManagerException(FileVersioningException):
    """The file cannot be handled by this manager (not HDF5, no data version, a shape that
    cannot be updated)."""


class FileMigrationException(TVBException):
    """Migrating a file to a newer version failed."""


class UnsupportedFileStorageException(TVBException):
    """A file storage other than H5 was chosen."""


class RenameWhileSyncEncryptingException(TVBException):
    """A project was to be renamed during sync encryption."""


# Reason -> TVB exception; DATASET_NOT_FOUND depends on the call (see _tvb_errors).
_TVB_BY_REASON: dict[str, type[TVBException]] = {
    "FILE_NOT_FOUND": MissingDataFileException,
    "DATASET_NOT_FOUND": MissingDataSetException,
    "NOT_HDF5": IncompatibleFileManagerException,
    "SHAPE_MISMATCH": IncompatibleFileManagerException,
    "METADATA_NOT_FOUND": FileStructureException,
    "FOLDER_NOT_FOUND": FileStructureException,
    "FILE_EXISTS": FileStructureException,
    "INVALID_PATH": FileStructureException,
    "NOT_A_DATASET": FileStructureException,
    "NOT_A_GROUP": FileStructureException,
    "NOT_A_FILE": FileStructureException,
    "NOT_A_FOLDER": FileStructureException,
}
# Conditions of the connection, not of the storage: raised as the SDK's own exceptions.
_NOT_TVB = (errors.UnavailableError, errors.DeadlineExceededError, errors.OverloadedError)


@contextlib.contextmanager
def _tvb_errors(missing_node: type[TVBException] = MissingDataSetException) -> Iterator[None]:
    """Raise the SDK's exceptions as TVB's (``missing_node`` for a missing dataset, since
    TVB says FileStructureException where it deletes and MissingDataSetException where it
    reads)."""
    try:
        yield
    except TVBException:
        raise
    except _NOT_TVB:
        raise
    except errors.HoardError as exc:
        if exc.reason == "DATASET_NOT_FOUND":
            cls: type[TVBException] = missing_node
        else:
            cls = _TVB_BY_REASON.get(exc.reason, FileStorageException)
        raise cls(exc.message, code=exc.code, reason=exc.reason, details=exc.details) from exc


# -- the default connection --------------------------------------------------------------------

_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """One client per process for the facades made without one: ``$HOARD_TARGET`` or
    127.0.0.1:50051 (see :func:`hoard.connect`)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = connect()
        return _default


# -- HDF5StorageManager ------------------------------------------------------------------------


def _check_data(data_list: Any) -> np.ndarray:
    if data_list is None:
        raise FileStructureException("Could not store null data")
    if not isinstance(data_list, (list, np.ndarray)):
        raise FileStructureException(
            f"Invalid data type. Could not store data of type: {type(data_list)}"
        )
    return np.asarray(data_list)


class HDF5StorageManager:
    """TVB's storage manager for one HDF5 file, ``storage_full_name`` being its path inside
    ``repository`` on the daemon ``client`` talks to (default: :func:`default_client`)."""

    TVB_ATTRIBUTE_PREFIX = "TVB_"
    ROOT_NODE_PATH = "/"
    BOOL_VALUE_PREFIX = "bool:"
    DATETIME_VALUE_PREFIX = "datetime:"
    DATE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

    def __init__(
        self,
        storage_full_name: str | None,
        client: Client | None = None,
        repository: str = "default",
    ) -> None:
        if storage_full_name is None:
            raise FileStructureException("Please provide the file name where to store data")
        self.storage_full_name = str(storage_full_name)
        self.datasets: Datasets = (client or default_client()).datasets(repository)
        self._appenders: dict[tuple[str, str], Appender] = {}
        # TVB shares a manager between threads now and then; the buffers are guarded here
        self._buffers_lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<hoard.tvb.HDF5StorageManager {self.storage_full_name}>"

    @property
    def _path(self) -> str:
        return self.storage_full_name

    # -- files ---------------------------------------------------------------------------------

    def is_valid_tvb_file(self) -> bool:
        """Whether the file exists and is HDF5."""
        with _tvb_errors():
            return self.datasets.is_valid_file(self._path)

    is_valid_file = is_valid_tvb_file

    def close_file(self) -> None:
        """Make every buffered append durable and release the daemon's handle on the file."""
        with _tvb_errors():
            self._flush_appenders()
            self.datasets.close_file(self._path)

    def _flush_appenders(self) -> None:
        with self._buffers_lock:
            appenders, self._appenders = list(self._appenders.values()), {}
        failure: BaseException | None = None
        for appender in appenders:
            try:
                appender.close()
            except BaseException as exc:  # close them all; report the first failure
                failure = failure or exc
        if failure is not None:
            raise failure

    # -- data ----------------------------------------------------------------------------------

    def store_data(
        self, data_list: Any, dataset_name: str = "", where: str = ROOT_NODE_PATH
    ) -> None:
        """Store ``data_list`` as dataset ``dataset_name``. An existing dataset is updated
        when the shape is the same; another shape is an IncompatibleFileManagerException,
        as in TVB."""
        data = _check_data(data_list)
        with _tvb_errors():
            self._flush_appenders()
            try:
                existing = self.datasets.get_data_shape(self._path, dataset_name, where=where)
            except (errors.DatasetNotFoundError, errors.DatasetFileNotFoundError):
                existing = None
            if existing is not None and existing.shape != data.shape:
                raise IncompatibleFileManagerException(
                    f"Cannot update existing H5 DataSet {_node(where, dataset_name)} with a "
                    "different shape. Try defining it as chunked!"
                )
            self.datasets.store_data(self._path, dataset_name, data, where=where)

    def append_data(
        self,
        data_list: Any,
        dataset_name: str = "",
        grow_dimension: int = -1,
        close_file: bool = True,
        where: str = ROOT_NODE_PATH,
    ) -> None:
        """Append ``data_list`` along ``grow_dimension``, creating the dataset if needed.
        With ``close_file=False`` the rows are batched and sent in the background (durable
        at the latest on ``close_file()``); otherwise durable when this returns."""
        data = _check_data(data_list)
        with _tvb_errors(), self._buffers_lock:
            key = (where, dataset_name)
            appender = self._appenders.get(key)
            if not close_file:
                if appender is None or appender.grow_dimension != grow_dimension:
                    if appender is not None:
                        appender.close()
                    appender = self.datasets.appender(
                        self._path, dataset_name, grow_dimension=grow_dimension, where=where
                    )
                    self._appenders[key] = appender
                appender.append(data)
                return
            if appender is not None and appender.grow_dimension == grow_dimension:
                appender.append(data)  # after the rows buffered before it, in order
                self._flush_appenders()
                self.datasets.close_file(self._path)
                return
            self._flush_appenders()
            self.datasets.append_data(
                self._path,
                dataset_name,
                data,
                grow_dimension=grow_dimension,
                where=where,
                close_file=True,
            )

    def get_data(
        self,
        dataset_name: str = "",
        data_slice: Any = None,
        where: str = ROOT_NODE_PATH,
        ignore_errors: bool = False,
        close_file: bool = True,
    ) -> Any:
        """``dataset[data_slice]`` (the whole dataset when None); None for a missing dataset
        when ``ignore_errors``. Rows this manager buffered are sent first, so they are read."""
        with _tvb_errors():
            self._flush_appenders()
            try:
                data = self.datasets.get_data(self._path, dataset_name, data_slice, where=where)
                return data[()] if data.ndim == 0 else data  # a numpy scalar, as h5py gives
            except errors.DatasetNotFoundError:
                if ignore_errors:
                    return None
                raise MissingDataSetException(
                    f"Could not locate dataset: {dataset_name}",
                    reason="DATASET_NOT_FOUND",
                    details={"path": self._path, "node": _node(where, dataset_name)},
                ) from None

    def get_data_shape(
        self, dataset_name: str = "", where: str = ROOT_NODE_PATH
    ) -> tuple[int, ...]:
        with _tvb_errors():
            self._flush_appenders()
            return self.datasets.get_data_shape(self._path, dataset_name, where=where).shape

    def remove_data(self, dataset_name: str = "", where: str = ROOT_NODE_PATH) -> None:
        """Delete a dataset; FileStructureException when there is none, as in TVB."""
        with _tvb_errors(missing_node=FileStructureException):
            self._flush_appenders()
            self.datasets.remove_data(self._path, dataset_name, where=where)

    # -- metadata ------------------------------------------------------------------------------

    def set_metadata(
        self,
        meta_dictionary: dict[str, Any],
        dataset_name: str = "",
        tvb_specific_metadata: bool = True,
        where: str = ROOT_NODE_PATH,
    ) -> None:
        """Set attributes on the root (``dataset_name`` "") or a node; keys get the "TVB_"
        prefix when ``tvb_specific_metadata``. Booleans and datetimes are stored in TVB's
        conventions by the daemon."""
        with _tvb_errors():
            self.datasets.set_metadata(
                self._path,
                meta_dictionary,
                dataset_name,
                where=where,
                tvb_specific_metadata=tvb_specific_metadata,
            )

    def get_metadata(self, dataset_name: str = "", where: str = ROOT_NODE_PATH) -> dict[str, Any]:
        """Every attribute of the node, keys without the "TVB_" prefix."""
        with _tvb_errors():
            return self.datasets.get_metadata(self._path, dataset_name, where=where)

    def remove_metadata(
        self,
        meta_key: str,
        dataset_name: str = "",
        tvb_specific_metadata: bool = True,
        where: str = ROOT_NODE_PATH,
        check_existence: bool = False,
    ) -> None:
        """Remove one attribute. As in TVB, with ``check_existence`` a missing key is
        ignored; without it, a missing key or node is a FileStructureException."""
        with _tvb_errors(missing_node=FileStructureException):
            self.datasets.remove_metadata(
                self._path,
                meta_key,
                dataset_name,
                where=where,
                tvb_specific_metadata=tvb_specific_metadata,
                check_existence=not check_existence,
            )

    def get_file_data_version(
        self, data_version: str, dataset_name: str = "", where: str = ROOT_NODE_PATH
    ) -> Any:
        """The value of attribute ``data_version`` (e.g. "Data_version") of the node.
        MissingDataFileException for a missing file, IncompatibleFileManagerException for
        a file that is not HDF5 or lacks the attribute."""
        with _tvb_errors():
            metadata = self.datasets.get_metadata(self._path, dataset_name, where=where)
        if data_version not in metadata:
            raise IncompatibleFileManagerException(
                f"Could not find TVB specific data version attribute {data_version} in file: "
                f"{self._path}."
            )
        return metadata[data_version]

    @staticmethod
    def serialize_bool(value: bool) -> str:
        return HDF5StorageManager.BOOL_VALUE_PREFIX + str(value)


def _node(where: str, dataset: str) -> str:
    return posixpath.join(where or "/", dataset) if dataset else (where or "/")


# -- FilesHelper -------------------------------------------------------------------------------


class FilesHelper:
    """TVB's ``FilesHelper`` in repository terms: every path is relative to the
    repository's top, projects live under ``PROJECTS/``. Errors are TVB's
    (FileStructureException for folders that cannot be found, renamed or removed)."""

    PROJECTS_FOLDER = "PROJECTS"
    ALLEN_MOUSE_CONNECTIVITY_CACHE_FOLDER = "ALLEN_MOUSE_CONNECTIVITY_CACHE"

    def __init__(self, client: Client | None = None, repository: str = "default") -> None:
        self.datasets: Datasets = (client or default_client()).datasets(repository)

    # -- projects ------------------------------------------------------------------------------

    def check_created(self, path: str) -> None:
        """Create folder ``path`` and its parents if needed."""
        with _tvb_errors():
            try:
                self.datasets.create_folder(path)
            except errors.HoardError as exc:
                if isinstance(exc, _NOT_TVB):
                    raise
                raise FileStructureException(f"Could not create Folder {path}") from exc

    @classmethod
    def get_projects_folder(cls) -> str:
        return cls.PROJECTS_FOLDER

    def get_project_folder(self, project_name: str, *sub_folders: str) -> str:
        """The folder of a project (or a folder in it), created if it does not exist."""
        path = posixpath.join(self.get_projects_folder(), project_name, *sub_folders)
        self.check_created(path)
        return path

    @staticmethod
    def get_project_folder_from_h5(h5_file: str) -> str:
        return posixpath.dirname(posixpath.dirname(h5_file))

    def rename_project_structure(self, project_name: str, new_name: str) -> tuple[str, str]:
        """Rename a project's folder; ``(old path, new path)``. FileStructureException when
        the new name is taken or the rename fails."""
        path = self.get_project_folder(project_name)
        new_path = posixpath.join(posixpath.dirname(path), new_name)
        try:
            self.datasets.rename_folder(path, new_path)
        except errors.HoardError as exc:
            if isinstance(exc, _NOT_TVB):
                raise
            raise FileStructureException(f"Could not rename to {new_name}") from exc
        return path, new_path

    def get_project_meta_file_path(self, project_name: str, project_file: str) -> str:
        return posixpath.join(self.get_project_folder(project_name), project_file)

    def read_project_metadata(self, project_path: str, project_file: str) -> dict[str, str]:
        with _tvb_errors():
            return self.datasets.read_xml_metadata(posixpath.join(project_path, project_file))

    def write_project_metadata_from_dict(
        self, project_path: str, meta_entity: dict[str, Any], project_file: str
    ) -> None:
        with _tvb_errors():
            self.datasets.write_xml_metadata(
                posixpath.join(project_path, project_file), meta_entity
            )

    def write_project_metadata(self, meta_dictionary: dict[str, Any], project_file: str) -> None:
        folder = self.get_project_folder(meta_dictionary["name"])
        self.write_project_metadata_from_dict(folder, meta_dictionary, project_file)

    # -- operations, datatypes, images -----------------------------------------------------------

    def remove_operation_data(self, project_name: str, operation_id: int | str) -> None:
        path = posixpath.join(self.get_projects_folder(), project_name, str(operation_id))
        try:
            self.remove_folder(path, False)
        except FileStructureException as exc:
            raise FileStructureException(f"Could not remove files for OP{operation_id}") from exc

    def move_datatype(self, new_project_name: str, new_op_id: int | str, full_path: str) -> None:
        """Move an H5 file into another project's operation folder."""
        folder = self.get_project_folder(new_project_name, str(new_op_id))
        try:
            self.datasets.rename_file(
                full_path, posixpath.join(folder, posixpath.basename(full_path))
            )
        except errors.HoardError as exc:
            if isinstance(exc, _NOT_TVB):
                raise
            raise FileStructureException(f"Could not move {full_path}") from exc

    def get_images_folder(self, project_name: str, images_folder: str) -> str:
        path = posixpath.join(self.get_project_folder(project_name), images_folder)
        self.check_created(path)
        return path

    def get_allen_mouse_cache_folder(self, project_name: str) -> str:
        return self.get_images_folder(project_name, self.ALLEN_MOUSE_CONNECTIVITY_CACHE_FOLDER)

    # -- generic -------------------------------------------------------------------------------

    def copy_file(
        self,
        source: str | IO[bytes],
        dest: str | IO[bytes],
        dest_postfix: str | None = None,
        buffer_size: int | None = None,
    ) -> None:
        """Copy a file: both paths in the repository, or one side a local binary handle
        (an upload into the repository, or a download from it). ``buffer_size`` is accepted
        for TVB's signature; transfers move in 1 MiB chunks."""
        if isinstance(dest, str) and dest_postfix is not None:
            dest = posixpath.join(dest, dest_postfix)
        with _tvb_errors():
            if isinstance(source, str) and isinstance(dest, str):
                self.datasets.copy_file(source, dest, overwrite=True)
            elif isinstance(dest, str):
                assert not isinstance(source, str)
                self.datasets.import_file(source, dest, overwrite=True)
            elif isinstance(source, str):
                self.datasets.export(source, dest)
            else:
                raise FileStructureException("copy_file needs at least one repository path")

    def remove_files(self, file_list: Iterable[str], ignore_exception: bool = False) -> None:
        """Remove files and folders; missing ones are skipped, as in TVB. Other failures
        raise unless ``ignore_exception``."""
        try:
            with _tvb_errors():
                self.datasets.remove_files(list(file_list), ignore_errors=True)
        except TVBException:
            if not ignore_exception:
                raise

    def remove_folder(self, folder_path: str, ignore_errors: bool = False) -> None:
        """Remove a folder and everything in it; FileStructureException when it does not
        exist, unless ``ignore_errors``."""
        try:
            self.datasets.remove_folder(folder_path, ignore_errors=ignore_errors)
        except errors.HoardError as exc:
            if isinstance(exc, _NOT_TVB):
                raise
            if not ignore_errors:
                raise FileStructureException(
                    f"Given path does not exists, or is not a folder {folder_path}"
                ) from exc

    def compute_size_on_disk(self, file_path: str) -> int:
        """A file's size in whole KiB; 0 when it is not a file."""
        try:
            usage = self.datasets.disk_usage(file_path)
        except errors.NotFoundError:
            return 0
        return usage.bytes // 1024 if usage.files == 1 else 0

    def compute_recursive_h5_disk_usage(self, start_path: str = "") -> int:
        """KiB of every .h5 file under ``start_path``."""
        with _tvb_errors():
            return self.datasets.disk_usage(start_path, h5_only=True).kib

    def write_zip_folder(
        self,
        dest_path: str | os.PathLike[str] | IO[bytes],
        folder: str,
        exclude: Iterable[str] = (),
        need_parent_folder: bool = False,
    ) -> int:
        """TvbZip.write_zip_folder: a zip of repository ``folder`` (leaving out names in
        ``exclude``) written to the local ``dest_path``; bytes written."""
        with _tvb_errors():
            return self.datasets.zip_folder(
                folder, dest_path, exclude=exclude, need_parent_folder=need_parent_folder
            )
