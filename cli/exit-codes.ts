import type { ErrorCode } from '../wire';

/**
 * sysexits.h: what a supervisor (systemd) and a script can tell apart. One table for every
 * subcommand; docs/exit-codes.md and `devstreams --help` print it (EXIT_TABLE below).
 */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 64,
  /** EX_NOHOST: the hub does not know the device. */
  NO_DEVICE: 68,
  /** EX_UNAVAILABLE: the hub (or the local agent) cannot be reached. */
  UNAVAILABLE: 69,
  /** EX_TEMPFAIL: the device is offline or did not answer in time, or the hub asks us to slow down. */
  TEMPFAIL: 75,
  /** EX_PROTOCOL: the hub answered something unexpected, or a stream was lost midway. */
  PROTOCOL: 76,
  /** EX_NOPERM: refused: credentials, this machine's clock, the hub's certificate, the device's allowlist. */
  REFUSED: 77,
  CONFIG: 78,
  /** EX_CANTCREAT: a file or directory cannot be created or written (read-only, permissions). */
  CANT_CREATE: 73,
  /** EX_IOERR: reading or writing a file failed (disk full, I/O error). */
  IO_ERROR: 74,
  /** `shell --timeout` ran out (timeout(1)'s code). */
  TIMEOUT: 124,
} as const;

const BY_ERROR_CODE: Partial<Record<ErrorCode, number>> = {
  EUSAGE: EXIT.USAGE,
  ECONFIG: EXIT.CONFIG,
  EMALFORMED_CONNECTION_STRING: EXIT.CONFIG,
  EUNKNOWN_DEVICE: EXIT.NO_DEVICE,
  EHUB_UNREACHABLE: EXIT.UNAVAILABLE,
  EPROXY: EXIT.UNAVAILABLE,
  EBROKER: EXIT.UNAVAILABLE,
  EPTY_UNAVAILABLE: EXIT.UNAVAILABLE,
  EDEVICE_OFFLINE: EXIT.TEMPFAIL,
  EDEVICE_TIMEOUT: EXIT.TEMPFAIL,
  ETHROTTLED: EXIT.TEMPFAIL,
  EHUB_ERROR: EXIT.PROTOCOL,
  ESTREAM_CLOSED: EXIT.PROTOCOL,
  EUNAUTHORIZED: EXIT.REFUSED,
  ECLOCK_SKEW: EXIT.REFUSED,
  ECERT_UNTRUSTED: EXIT.REFUSED,
  EDEVICE_REFUSED: EXIT.REFUSED,
  ECANTCREATE: EXIT.CANT_CREATE,
  EFILE_IO: EXIT.IO_ERROR,
};

/** The exit code for a DevstreamsError's code: the same cause exits the same way from every subcommand. */
export function exitCodeFor(code: ErrorCode): number {
  return BY_ERROR_CODE[code] ?? EXIT.FAILURE;
}

/** The table as `--help` and the man page show it. */
export const EXIT_TABLE = `Exit status (every subcommand):
   0  success
   1  any other failure
  64  usage: unknown command or option, missing argument or required option
  68  the hub does not know the device
  69  the hub cannot be reached; a hub or agent cannot listen; for status: the local agent is not running or not connected
  73  a file or directory cannot be created or written (read-only, permissions)
  74  reading or writing a file failed (disk full, I/O error)
  75  the device is offline or did not answer in time, or the hub is rate-limiting: retry later
  76  the hub answered something unexpected, or a stream was lost midway
  77  refused: service credentials, this machine's clock, the hub's certificate, or the device's allowlist
  78  configuration: a config file, a connection string or a CA file that cannot be used
 124  shell --timeout ran out
 shell DEVICE -- CMD exits with the remote command's status (128+N when killed by signal N, 255 when
 the stream ended without one); devstreams' own failures use the codes above.
`;
