"""Who may use a channel: ZeroMQ CURVE on every socket, and the rule for binding beyond loopback.

CURVE (RFC 26, libzmq's built-in elliptic-curve security) encrypts every message and
authenticates both ends: a client must know its server's public key, and a server accepts a
client only if the client's public key is in its folder of authorised keys (checked by a ZAP
handler, :mod:`zmq.auth`). One rule decides the roles everywhere in this project: the socket
that **binds** is the server (publishers, a builder's pattern port, a distributor's worker
port, the products channel), the one that **connects** is the client.

- :class:`Security`: the process-wide setting, installed once with :func:`use_security` (the
  ``operando`` command does it from ``--keys``/``--insecure`` or the config's ``[security]``;
  spawned processes get their parent's). Every :class:`~.endpoint.Endpoint` applies it.
- :func:`make_keys`: the key folder ``operando keys`` writes.
- :class:`CurveServer`: a bound socket's CURVE and its count of refused clients.

The key folder (``operando keys DIR``)::

    DIR/server.key, DIR/server.key_secret       the servers' pair (on the hosts that bind)
    DIR/<client>.key, DIR/<client>.key_secret   a client's pair (on the hosts that connect)
    DIR/authorized/<client>.key                 public keys the servers accept

Without keys, a socket may bind only to loopback (``127.0.0.0/8``, ``::1``), ``ipc://`` or
``inproc://``; anything wider is refused unless ``insecure`` says so.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from streaming.errors import ConfigError

__all__ = ["CurveServer", "Security", "current_security", "is_local_address", "make_keys", "use_security"]

logger = logging.getLogger(__name__)

SERVER_KEY = "server"
DEFAULT_CLIENT = "client"
AUTHORIZED = "authorized"


@dataclass(frozen=True)
class Security:
    """How this process's sockets authenticate.

    Parameters
    ----------
    keys : Path or None
        The key folder (:func:`make_keys`); None for no CURVE.
    client : str
        Whose pair this process's connecting sockets use (``<client>.key_secret`` in ``keys``).
    insecure : bool
        Allow binding beyond loopback without CURVE (a trusted, closed network).
    """

    keys: Path | None = None
    client: str = DEFAULT_CLIENT
    insecure: bool = False

    @property
    def curve(self) -> bool:
        return self.keys is not None

    def check(self) -> Security:
        """Raise :class:`ConfigError` (naming the setting) unless the folder holds what it needs."""
        if self.keys is not None:
            if not zmq.has("curve"):
                raise ConfigError("security.keys: this libzmq was built without CURVE")
            if not Path(self.keys).is_dir():
                raise ConfigError(f"security.keys: no such folder: {self.keys} (make one with `operando keys DIR`)")
            has_pair = any(_pair_path(self.keys, name).is_file() for name in (SERVER_KEY, self.client))
            if not has_pair:
                raise ConfigError(f"security.keys: {self.keys} holds neither {SERVER_KEY}.key_secret nor "
                                  f"{self.client}.key_secret (make them with `operando keys {self.keys}`)")  # fmt: skip
        return self

    def options(self) -> list[str]:
        """The ``operando`` command-line options that say the same (for a child command)."""
        keys = ["--keys", str(self.keys), "--client", self.client] if self.keys is not None else []
        return [*keys, *(["--insecure"] if self.insecure else [])]

    def server_pair(self, address: str) -> tuple[bytes, bytes]:
        return _load_pair(Path(self.keys), SERVER_KEY, f"to bind {address}")

    def client_pair(self, address: str) -> tuple[bytes, bytes]:
        return _load_pair(Path(self.keys), self.client, f"to connect to {address}")

    def server_public_key(self, address: str) -> bytes:
        path = Path(self.keys) / f"{SERVER_KEY}.key"
        if not path.is_file():
            raise ConfigError(f"security.keys: {path} is missing (the servers' public key, needed to connect to "
                              f"{address})")  # fmt: skip
        public, _ = _load_certificate(path)
        return public

    def authorized_keys(self) -> set[bytes]:
        folder = Path(self.keys) / AUTHORIZED
        if not folder.is_dir():
            return set()
        try:
            return set(zmq.auth.load_certificates(folder))
        except (OSError, ValueError) as error:
            raise ConfigError(f"security.keys: {folder} holds a file that is not a public key ({error})") from None


def _load_certificate(path: Path) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as error:
        raise ConfigError(f"security.keys: {path} is not a key file `operando keys` wrote ({error})") from None


def _pair_path(folder: Path, name: str) -> Path:
    return Path(folder) / f"{name}.key_secret"


def _load_pair(folder: Path, name: str, why: str) -> tuple[bytes, bytes]:
    path = _pair_path(folder, name)
    if not path.is_file():
        raise ConfigError(f"security.keys: {path} is missing ({why}; make it with `operando keys {folder}`)")
    public, secret = _load_certificate(path)
    if secret is None:
        raise ConfigError(f"security.keys: {path} holds no secret key")
    return public, secret


class _Installed:
    """The process's setting (one for every thread: sockets are opened from several)."""

    security = Security()


def use_security(security: Security) -> None:
    """Install ``security`` for every socket this process opens from now on."""
    _Installed.security = security.check()


def current_security() -> Security:
    return _Installed.security


def make_keys(folder: Path, clients: tuple[str, ...] = (DEFAULT_CLIENT,)) -> list[Path]:
    """Write the servers' key pair (unless there is one) and a pair per client, authorising
    each client; returns the files written. Secret files are readable by their owner only.
    An existing client pair is never overwritten (its holders would be locked out)."""
    folder = Path(folder)
    for name in clients:
        if not name.replace("-", "").replace("_", "").isalnum() or name in (SERVER_KEY, AUTHORIZED):
            raise ConfigError(f"keys: a client's name is letters, digits, - and _ (not {SERVER_KEY!r}), got {name!r}")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    (folder / AUTHORIZED).mkdir(exist_ok=True)
    written = []
    for name in (SERVER_KEY, *clients):
        if _pair_path(folder, name).exists():
            if name != SERVER_KEY:
                raise ConfigError(f"keys: {_pair_path(folder, name)} exists; choose another client name")
            continue
        umask = os.umask(0o077)  # the secret is never readable by others, not even for a moment
        try:
            public, secret = zmq.auth.create_certificates(folder, name)
        finally:
            os.umask(umask)
        Path(public).chmod(0o644)
        written += [Path(public), Path(secret)]
        if name != SERVER_KEY:
            written.append(Path(shutil.copy(public, folder / AUTHORIZED / f"{name}.key")))
    return written


def is_local_address(address: str) -> bool:
    """Whether ``address`` reaches this machine only: ``ipc://``, ``inproc://``, or TCP on a
    loopback address (``127.0.0.0/8``, ``::1``). Names are not: ZeroMQ binds no host name, and
    one could resolve elsewhere."""
    transport, _, rest = address.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name, a host name: reachable from elsewhere
        return False


def check_bind(address: str, security: Security) -> None:
    """Refuse to bind beyond loopback without CURVE, unless insecure."""
    if not security.curve and not security.insecure and not is_local_address(address):
        raise ConfigError(f"endpoint {address}: binding beyond loopback without CURVE is refused; make keys with "
                          f"`operando keys DIR` and pass --keys DIR (security.keys), or say --insecure")  # fmt: skip


def secure_client(socket: zmq.Socket, address: str, security: Security) -> None:
    """Make a connecting socket a CURVE client (before it connects), if ``security`` says so."""
    if security.curve:
        socket.curve_serverkey = security.server_public_key(address)
        socket.curve_publickey, socket.curve_secretkey = security.client_pair(address)


class _Authenticators:
    """One ZAP handler thread per ZeroMQ context, shared by its bound sockets (refcounted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_context: dict[int, tuple[ThreadAuthenticator, int]] = {}

    def acquire(self, context: zmq.Context) -> ThreadAuthenticator:
        with self._lock:
            authenticator, users = self._by_context.get(id(context), (None, 0))
            if authenticator is None:
                authenticator = ThreadAuthenticator(context, log=logger.getChild("zap"))
                authenticator.start()
            self._by_context[id(context)] = (authenticator, users + 1)
            return authenticator

    def release(self, context: zmq.Context) -> None:
        # stopped under the lock: a new handler of the same context binds the ZAP endpoint only
        # once this one's sockets are closed
        with self._lock:
            authenticator, users = self._by_context[id(context)]
            if users > 1:
                self._by_context[id(context)] = (authenticator, users - 1)
                return
            del self._by_context[id(context)]
            authenticator.stop()


_authenticators = _Authenticators()
_domains = iter(range(1, 2**62))


class CurveServer:
    """A bound socket made a CURVE server, accepting the keys of ``security``'s authorised
    folder (read at bind). Refused handshakes (a client reconnecting is refused each time) are
    counted in :attr:`refused` and logged: the first, the 10th, 100th, then every 1000th."""

    def __init__(self, socket: zmq.Socket, context: zmq.Context, address: str, security: Security) -> None:
        self.address = address
        self.refused = 0
        public, secret = security.server_pair(address)  # a missing file fails before any thread starts
        self._authorized = security.authorized_keys()
        if not self._authorized:
            logger.warning("%s: no authorised client keys in %s/%s; every client will be refused", address,
                           security.keys, AUTHORIZED)  # fmt: skip
        socket.curve_publickey, socket.curve_secretkey = public, secret
        socket.curve_server = True
        socket.zap_enforce_domain = True  # no ZAP handler answering: refuse, never let anyone in
        self._context = context
        self._domain = f"operando-{next(_domains)}"
        socket.zap_domain = self._domain.encode()
        self._authenticator = _authenticators.acquire(context)
        self._authenticator.configure_curve_callback(domain=self._domain, credentials_provider=self)

    def callback(self, domain: str, client_public_key: bytes) -> bool:
        """The ZAP handler's question (its thread): is this client's key authorised?"""
        if client_public_key in self._authorized:
            return True
        self.refused += 1
        if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
            logger.warning("%s: client with unauthorised key %s refused (%d so far)", self.address,
                           client_public_key.decode(errors="replace"), self.refused)  # fmt: skip
        return False

    def close(self) -> None:
        self._authenticator.credentials_providers.pop(self._domain, None)
        _authenticators.release(self._context)


def apply_security(socket: zmq.Socket, context: zmq.Context, address: str, *, bind: bool) -> CurveServer | None:
    """The process's :class:`Security` on a new socket before it binds or connects: the bind
    rule, then CURVE's server or client role. Returns the server's state for a bound socket."""
    security = current_security()
    if bind:
        check_bind(address, security)
        return CurveServer(socket, context, address, security) if security.curve else None
    secure_client(socket, address, security)
    return None
