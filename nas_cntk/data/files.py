"""Where CIFAR-10 lives, and fetching it: lookup, download with an md5 check, safe extraction.

The files are the standard python-pickle batches in a ``cifar-10-batches-py`` folder. The lookup takes
``--data-dir``, else ``$NAS_CNTK_DATA_DIR``, else the user's cache; each may name that folder or the
folder holding it. A download or extraction that fails leaves nothing that looks complete.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from nas_cntk.errors import DataError

DATA_DIR_ENV = "NAS_CNTK_DATA_DIR"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)


def default_data_dir() -> Path:
    """Where CIFAR-10 is kept when neither ``--data-dir`` nor ``$NAS_CNTK_DATA_DIR`` says otherwise."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "nas-cntk"


def _where_to_put(folder: Path) -> str:
    return (f"put the extracted {FOLDER} folder at {folder} (so that {folder / TRAIN_FILES[0]} exists), "
            f"or pass --data-dir DIR / set {DATA_DIR_ENV}=DIR to a folder that holds it")


def resolve_data_dir(data_dir: str | Path | None = None, *, download: bool = True) -> Path:
    """The folder holding ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``.

    ``data_dir``, else ``$NAS_CNTK_DATA_DIR``, else :func:`default_data_dir`; either the
    ``cifar-10-batches-py`` folder itself or a folder containing it. When it is absent and
    ``download`` is true, the official archive is downloaded there, checked and extracted.
    """
    base = Path(data_dir or os.environ.get(DATA_DIR_ENV) or default_data_dir()).expanduser()
    if base.name == FOLDER or any((base / name).exists() for name in TRAIN_FILES + TEST_FILES):
        folder = base
    else:
        folder = base / FOLDER
    if not folder.is_dir():
        if not download:
            raise DataError(f"no CIFAR-10 at {folder}: {_where_to_put(folder)}")
        _download_and_extract(folder)
    for name in TRAIN_FILES + TEST_FILES:
        if not (folder / name).is_file():
            raise DataError(f"CIFAR-10 file {folder / name} is missing: the folder is incomplete; replace it "
                            f"with a full copy of {FOLDER} (or delete it to download it again)")
    return folder


def _download_and_extract(folder: Path) -> None:
    """Download the archive next to ``folder``, check its md5 and extract it, or raise DataError."""
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # A temporary name, so that an interrupted download never passes for a complete archive.
        handle, name = tempfile.mkstemp(dir=parent, prefix="cifar-10-python.", suffix=".tar.gz.part")
        os.close(handle)
    except OSError as error:
        raise DataError(f"cannot write to {parent} ({error}); {_where_to_put(folder)}") from None
    archive = Path(name)
    try:
        md5 = _download(CIFAR10_URL, archive, folder)
        if md5 != CIFAR10_MD5:
            raise DataError(f"the archive downloaded from {CIFAR10_URL} has md5 {md5}, not {CIFAR10_MD5}: "
                            f"it is corrupt or not CIFAR-10 and was removed; try again, or {_where_to_put(folder)}")
        _extract(archive, folder)
    finally:
        archive.unlink(missing_ok=True)


def _download(url: str, archive: Path, folder: Path) -> str:
    """Stream ``url`` into ``archive`` with a progress bar; return the md5 of what was written."""
    md5 = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="Downloading CIFAR-10") as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    md5.update(chunk)
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as error:  # URLError, timeouts and resets are OSErrors
        if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
            error = error.reason  # "[Errno 111] Connection refused", not "<urlopen error [Errno 111] ...>"
        reason = " ".join(str(error).split())
        raise DataError(f"could not download CIFAR-10 from {url} ({reason}); {_where_to_put(folder)}") from None
    return md5.hexdigest()


def _extract(archive: Path, folder: Path) -> None:
    """Extract the archive's ``cifar-10-batches-py`` to ``folder``, refusing members that would land elsewhere."""
    # Extract into a scratch folder beside the target and rename at the end: a half-extracted
    # folder must never look like a complete one to the next run.
    scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".cifar-10-extract."))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                inside = (scratch / member.name).resolve().is_relative_to(scratch.resolve())
                if not inside or not (member.isfile() or member.isdir()):
                    raise DataError(f"the CIFAR-10 archive has an unsafe member {member.name!r} and was not "
                                    f"extracted; {_where_to_put(folder)}")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the library's own guard as well
                tar.extractall(scratch, filter="data")
            else:  # pragma: no cover - older Pythons rely on the check above
                tar.extractall(scratch)
        if not (scratch / FOLDER).is_dir():
            raise DataError(f"the CIFAR-10 archive holds no {FOLDER} folder; {_where_to_put(folder)}")
        try:
            (scratch / FOLDER).rename(folder)
        except OSError:
            if not folder.is_dir():  # else another process extracted it first, which is just as good
                raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        reason = " ".join(str(error).split())
        raise DataError(f"could not extract the CIFAR-10 archive into {folder.parent} ({reason}); "
                        f"{_where_to_put(folder)}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
