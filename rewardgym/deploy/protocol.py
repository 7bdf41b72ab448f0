"""The robot wire protocol: length-prefixed msgpack maps over TCP.

Every message is a 4-byte big-endian length followed by a msgpack map (at most 1 MiB)
with a string ``"type"``. Numbers are msgpack floats/ints, arrays are lists; there are no
extension types, so decoding never builds anything but dicts, lists, strings and numbers.
A robot speaking this protocol (``rewardgym.deploy.simrobot``, or a server you write on a
real robot's computer) can be driven with ``rewardgym deploy POLICY --robot tcp://HOST:PORT``.

Protocol version 1 (controller = ``rewardgym deploy``; robot = the server):

=============  ====================  ========================================================
direction      ``type``              fields
=============  ====================  ========================================================
controller ->  ``hello``             ``protocol`` (1), ``task``, ``layout`` (digest)
robot ->       ``hello``             ``protocol``, ``task``, ``layout``, ``control_period_s``,
                                     ``action_size``, ``watchdog_s``, ``robot`` (a name),
                                     ``details`` (a map, e.g. the perturbation)
controller ->  ``start``             ``seed``: the robot starts its real-time loop
robot ->       ``state``             once per control period: ``seq`` (0, 1, ...), ``time`` (s
                                     since start), ``readings`` (name -> list of floats, see
                                     :mod:`rewardgym.envs.observation`), ``reward``,
                                     ``terminated``, ``stopped`` (reason of a robot-side safe
                                     stop, or nil), ``applied`` (action applied in the last
                                     period), ``cmd_seq`` (the state seq that action answered,
                                     -1 none), ``late_commands``, ``overruns`` (counters)
controller ->  ``command``           ``seq`` (of the state it answers), ``action`` (list)
controller ->  ``stop``              ``reason``: safe stop now (latched)
controller ->  ``bye``               end of session (the robot safe-stops and closes)
robot ->       ``error``             ``message``: the robot refuses (wrong task, bad message)
=============  ====================  ========================================================

The robot applies, for each control period, the newest command that answers the state
that opened the period; a command that arrives after its period ended is counted in
``late_commands`` and the previous command is held. With no valid command for
``watchdog_s`` the robot safe-stops itself (``stopped = "watchdog: ..."``).

Input is bounded per control tick, not only per message. One tick of the controller reads
at most :data:`MAX_MESSAGES_PER_TICK` (64) messages and :data:`MAX_BYTES_PER_TICK` (4 MiB)
from the robot (a :class:`ReadBudget`), and stops reading at the tick's deadline (what is
still unread waits in the kernel's socket buffer for the next tick). A robot that has more
than that ready within one tick is flooding: :class:`RobotFlood`, a robot fault like a
garbled message (safe stop, ``summary.json``, exit 3). Nothing accumulates a backlog: the
receive buffer holds at most one message's bytes plus one read (64 KiB), and a tick keeps
only the newest state. Every :meth:`MessageStream.recv` and :meth:`MessageStream.recv_ready` call is
bounded this way, with a fresh budget when the caller passes none.
"""

from __future__ import annotations

import math
import select
import socket
import struct
import time
from typing import Any

import msgpack

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20
MAX_MESSAGES_PER_TICK = 64
"""Messages one control tick reads from the robot at most. A robot sends one state per period;
64 leaves room for a controller that fell 63 periods behind (0.5 s at 125 Hz, far past a
robot's watchdog), so more than this within one tick is a flood (:class:`RobotFlood`), not a backlog."""
MAX_BYTES_PER_TICK = 4 * MAX_MESSAGE_BYTES
"""Bytes one control tick reads from the socket at most (4 MiB: four messages of the largest size)."""
_READ_CHUNK = 65536
_HEADER = struct.Struct("!I")


class RobotError(RuntimeError):
    """Base class of communication faults with a robot."""


class ConnectionLost(RobotError):
    """The robot's connection closed or reset (its process died, the cable was pulled)."""


class RobotTimeout(RobotError):
    """Nothing arrived from the robot in time (silent or late robot)."""


class ProtocolError(RobotError):
    """A garbled, oversized or malformed message (the message names the field)."""


class RobotFlood(ProtocolError):
    """The peer sent more within one control tick than :class:`ReadBudget` allows (well-formed or not)."""


class ReadBudget:
    """What one control tick may read from a peer: a count of messages, of bytes, and a deadline.

    Args:
        max_messages: complete messages (default :data:`MAX_MESSAGES_PER_TICK`).
        max_bytes: bytes read from the socket (default :data:`MAX_BYTES_PER_TICK`).
        deadline: ``time.perf_counter()`` after which :meth:`MessageStream.recv_ready` stops reading
            (the rest waits for the next tick); None: no deadline.
    """

    def __init__(self, max_messages: int = MAX_MESSAGES_PER_TICK, max_bytes: int = MAX_BYTES_PER_TICK,
                 deadline: float | None = None):
        if max_messages < 1 or max_bytes < _HEADER.size + MAX_MESSAGE_BYTES:
            raise ValueError(f"a read budget must allow one message of the largest size, got {max_messages} "
                             f"messages, {max_bytes} bytes")
        self.max_messages, self.max_bytes, self.deadline = int(max_messages), int(max_bytes), deadline
        self.messages = 0
        """Messages read so far."""
        self.bytes = 0
        """Bytes read from the socket so far."""


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack extension type {code} is not allowed")


def encode(message: dict[str, Any]) -> bytes:
    """One framed message."""
    payload = msgpack.packb(message, use_bin_type=True)
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return _HEADER.pack(len(payload)) + payload


def decode(payload: bytes) -> dict[str, Any]:
    """A message's map; :class:`ProtocolError` for anything else."""
    try:
        message = msgpack.unpackb(payload, raw=False, strict_map_key=True, ext_hook=_refuse_ext)
    except ProtocolError:
        raise
    except Exception as exc:  # noqa: BLE001 - every decoding failure is one kind of fault
        raise ProtocolError(f"garbled message ({type(exc).__name__}: {exc})") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError(f"garbled message: expected a map with a string 'type', got {type(message).__name__}")
    return message


class MessageStream:
    """Framed messages over a connected TCP socket (``TCP_NODELAY``; reads never block past a deadline).

    Args:
        sock: a connected stream socket.
        peer: a name for messages ("robot", "controller").
    """

    def __init__(self, sock: socket.socket, peer: str = "robot"):
        self.sock = sock
        self.peer = peer
        self._buffer = bytearray()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small messages go out at once
        sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: dict[str, Any], timeout_s: float = 1.0) -> None:
        """Send one message; :class:`ConnectionLost` if the peer is gone or does not read."""
        data = memoryview(encode(message))
        deadline = time.perf_counter() + timeout_s
        while data:
            try:
                sent = self.sock.send(data)
                data = data[sent:]
            except BlockingIOError:
                left = deadline - time.perf_counter()
                if left <= 0 or not select.select([], [self.sock], [], left)[1]:
                    raise ConnectionLost(f"{self.peer} does not read its connection (send timed out)") from None
            except OSError as exc:
                raise ConnectionLost(f"connection to the {self.peer} lost ({exc.strerror or exc})") from None

    def _complete(self) -> bool:
        """A whole frame is buffered (an oversized announcement is a :class:`ProtocolError`)."""
        if len(self._buffer) < _HEADER.size:
            return False
        (size,) = _HEADER.unpack_from(self._buffer)
        if size > MAX_MESSAGE_BYTES:
            raise ProtocolError(f"garbled message from the {self.peer}: announced {size} bytes "
                                f"(limit {MAX_MESSAGE_BYTES})")
        return len(self._buffer) >= _HEADER.size + size

    def _frame(self, budget: ReadBudget) -> dict[str, Any] | None:
        """The next buffered message, charged to ``budget`` (None when none is complete)."""
        if not self._complete():
            return None
        if budget.messages >= budget.max_messages:
            raise RobotFlood(f"flood: the {self.peer} sent more than {budget.max_messages} messages within one "
                             f"control tick (at most {budget.max_messages} are read per tick)")
        (size,) = _HEADER.unpack_from(self._buffer)
        payload = bytes(self._buffer[_HEADER.size:_HEADER.size + size])
        del self._buffer[:_HEADER.size + size]
        budget.messages += 1
        try:
            return decode(payload)
        except ProtocolError as exc:
            raise ProtocolError(f"{exc} from the {self.peer}") from None

    def _fill(self, budget: ReadBudget) -> None:
        """One read of at most the budget's remaining bytes (:class:`RobotFlood` when none remain)."""
        left = budget.max_bytes - budget.bytes
        if left <= 0:
            raise RobotFlood(f"flood: the {self.peer} sent more than {budget.max_bytes} bytes within one control "
                             f"tick ({budget.messages} messages; at most {budget.max_bytes} bytes are read per "
                             f"tick)")
        try:
            chunk = self.sock.recv(min(_READ_CHUNK, left))
        except BlockingIOError:
            return
        except OSError as exc:
            raise ConnectionLost(f"connection to the {self.peer} lost ({exc.strerror or exc})") from None
        if not chunk:
            raise ConnectionLost(f"the {self.peer} closed the connection (its process exited?)")
        budget.bytes += len(chunk)
        self._buffer += chunk

    def recv(self, timeout_s: float, budget: ReadBudget | None = None) -> dict[str, Any] | None:
        """The next message, waiting at most ``timeout_s`` (None when nothing complete arrived).

        What it reads is charged to ``budget`` (a fresh :class:`ReadBudget` when None).
        """
        budget = budget if budget is not None else ReadBudget()
        deadline = time.perf_counter() + max(0.0, timeout_s)
        while True:
            message = self._frame(budget)
            if message is not None:
                return message
            left = deadline - time.perf_counter()
            if not select.select([self.sock], [], [], max(0.0, left))[0]:
                return None
            self._fill(budget)

    def recv_ready(self, budget: ReadBudget | None = None) -> list[dict[str, Any]]:
        """The complete messages already received or readable now (never waits), within ``budget``.

        Reads at most ``budget.max_messages`` messages and ``budget.max_bytes`` bytes (a fresh
        :class:`ReadBudget` when None): a peer with more ready is flooding, :class:`RobotFlood`.
        Past ``budget.deadline`` it stops reading and returns what it has (the rest waits).
        Messages that arrived before the peer closed are returned first; the next call raises
        :class:`ConnectionLost` (a ``stop`` followed by a close is never lost).
        """
        budget = budget if budget is not None else ReadBudget()
        out = []
        while True:
            message = self._frame(budget)
            if message is not None:
                out.append(message)
                continue
            if budget.deadline is not None and time.perf_counter() > budget.deadline:
                return out
            if not select.select([self.sock], [], [], 0)[0]:
                return out
            try:
                self._fill(budget)
            except ConnectionLost:
                if not out:
                    raise
                return out

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# ----------------------------------------------------------------------------- field checks
def field(message: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``message[name]`` if it has type ``kind`` (bools are not numbers), else :class:`ProtocolError`."""
    if name not in message:
        raise ProtocolError(f"{where}: missing field {name!r}")
    value = message[name]
    numeric = kind in (int, float) or kind == (int, float)
    if not isinstance(value, kind) or (numeric and isinstance(value, bool)):
        raise ProtocolError(f"{where}: field {name!r} has type {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"{where}: field {name!r} is not finite ({value!r})")
    return value


def number_list(message: dict[str, Any], name: str, size: int, where: str) -> list[float]:
    """``message[name]`` as ``size`` finite numbers."""
    values = field(message, name, list, where)
    if len(values) != size:
        raise ProtocolError(f"{where}: field {name!r} has {len(values)} values, expected {size}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ProtocolError(f"{where}: field {name!r} holds {v!r}, not a finite number")
    return values
