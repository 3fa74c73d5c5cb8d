"""Reading a config file (the main config, the web config): what the file may be, how much of it, read once.

A monitoring daemon reloads whatever its path points to: a FIFO would block the open, ``/dev/zero`` would
never end, a directory or socket is a mistake.  Only a regular file (or a symlink chain to one, as Kubernetes
mounts ConfigMaps and Secrets) of at most :data:`MAX_CONFIG_BYTES` is read, once, and its text handed on.
"""

from __future__ import annotations

import os
import stat
import warnings

from exporter.errors import ConfigError

#: The largest config file read (the main config and the web config), bytes.
MAX_CONFIG_BYTES = 4 * 1024 * 1024


def read_config_file(path: str | os.PathLike[str]) -> tuple[str, str]:
    """``(name, text)`` of a UTF-8 config file (the main config, the web config), read once.

    Only a regular file, or a symlink (chain) to one, as Kubernetes mounts a ConfigMap or Secret
    (``config.toml -> ..data/config.toml``, ``..data -> ..2024_01_01_00_00_00.1``), of at most
    :data:`MAX_CONFIG_BYTES`.  It is opened with ``O_NONBLOCK``, so a FIFO cannot block the open, and checked
    with ``fstat`` on the descriptor read (no race with a rename between the check and the read).

    Raises:
        ConfigError: the file is missing, not a regular file (FIFO, device, directory, socket), larger than
            :data:`MAX_CONFIG_BYTES`, unreadable or not UTF-8 (key ``""``).
    """
    name = str(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ConfigError(name, "", "file not found") from None
    except OSError as exc:
        raise ConfigError(name, "", f"cannot open: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(name, "", f"not a regular file ({_file_kind(mode)}): give a file or a symlink to one")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES and (chunk := os.read(fd, MAX_CONFIG_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(name, "", f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(name, "", f"larger than {MAX_CONFIG_BYTES} bytes: not a config file?")
    data = b"".join(chunks)
    try:
        return name, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(name, "", f"not UTF-8 text: byte {exc.start} ({exc.reason})") from None


def _file_kind(mode: int) -> str:
    kinds = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device"}
    kinds |= {stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}
    return kinds.get(stat.S_IFMT(mode), "not a file")


def check_ca_file(value: str | None) -> str | None:
    """A ``tls_ca_file`` (a pydantic validator): a config-like file, read as one, with a PEM certificate.

    Raises:
        ValueError: unreadable, not a regular file, too large, or no PEM certificate in it.
    """
    if value:
        from cryptography import x509
        from cryptography.utils import CryptographyDeprecationWarning

        try:
            _name, text = read_config_file(value)  # a regular file, bounded, never a FIFO
            with warnings.catch_warnings():  # a Samba CA's random serial may be negative (RFC 5280): still a CA
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                x509.load_pem_x509_certificates(text.encode())
        except ConfigError as exc:
            raise ValueError(f"{value[:48]!r}: {exc.problem}") from None
        except ValueError:
            raise ValueError(f"{value!r}: no PEM certificate in the file") from None
    return value
