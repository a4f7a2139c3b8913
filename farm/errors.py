"""The exception tree. The CLI turns each into one readable line and an exit code."""

from __future__ import annotations

# A run finished, but `--fail-on` found something it names (a regression, a new failure, ...).
GATE_FAILED = 4


class FarmError(Exception):
    """Base of every error farm raises on purpose."""

    exit_code = 1


class ConfigError(FarmError):
    """farm.yaml or a CLI flag is wrong; the message names the file, line and key."""

    exit_code = 2


class InputError(FarmError):
    """A file given on the command line cannot be used (missing, unreadable, wrong kind)."""

    exit_code = 2


class ModelError(InputError):
    """A .tflite model is not usable; the message names the file."""


class OutputError(InputError):
    """A file of the run folder cannot be written (disk full, read-only); names the file."""


class BinaryError(FarmError):
    """A benchmark binary is missing or does not fit a device's ABI."""

    exit_code = 2


class NoDeviceError(FarmError):
    """No device matched the selection."""

    exit_code = 3


class DeviceError(FarmError):
    """An operation on one device failed; the message names the device."""

    def __init__(
        self,
        serial: str,
        message: str,
        *,
        command: str | None = None,
        exit_code: int | None = None,
        output_tail: str = "",
    ) -> None:
        self.serial = serial
        self.message = message
        self.command = command
        self.rc = exit_code
        self.output_tail = output_tail
        super().__init__(f"[{serial}] {message}")


class DeviceUnavailable(DeviceError):
    """The device cannot be reached right now: possibly transient, worth waiting out."""


class DeviceOffline(DeviceUnavailable):
    """The adb server lists the device as offline, unauthorized or still connecting."""


class DeviceNotFound(DeviceUnavailable):
    """The adb server does not know the device (unplugged, or a restarted server that has
    not reconnected a network device yet)."""


class ConnectionLost(DeviceUnavailable):
    """The link to the device broke in the middle of an operation."""


class AdbServerUnreachable(DeviceUnavailable):
    """The adb server that sees the device does not answer (it died or was restarted)."""


class DeviceTimeout(DeviceError):
    """A device operation passed its deadline."""


class DeviceStorageFull(DeviceError):
    """The device ran out of space."""


class DeviceCommandFailed(DeviceError):
    """A shell command ran and failed (non-zero exit)."""


class RemoteFileMissing(DeviceCommandFailed):
    """A file asked of the device (pull, read) is not there."""


class AdbServerError(FarmError):
    """An adb server cannot be reached or answered nonsense."""


class LabError(FarmError):
    """The virtual lab could not be started, reached or stopped."""
