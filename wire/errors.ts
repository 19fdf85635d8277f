/**
 * Stable error codes for everything devstreams reports. Callers match on `code`, never on message
 * text, so messages can be improved without breaking anyone.
 */
export type ErrorCode =
  | 'EMALFORMED_TOPIC'
  | 'EMALFORMED_CONNECTION_STRING'
  | 'EMALFORMED_TOKEN'
  | 'ETOKEN_EXPIRED'
  /** The token's expiry (`se`) is further ahead than the hub accepts (MAX_SAS_LIFETIME_S). */
  | 'ETOKEN_TOO_LONG'
  /** The token's resource (`sr`) does not cover what was asked for. */
  | 'ETOKEN_SCOPE'
  | 'EBAD_SIGNATURE'
  | 'EUNKNOWN_DEVICE'
  | 'EDEVICE_OFFLINE'
  | 'EDEVICE_TIMEOUT'
  | 'EDEVICE_REFUSED'
  | 'EUNAUTHORIZED'
  | 'EHUB_UNREACHABLE'
  | 'ECERT_UNTRUSTED'
  | 'EPROXY'
  | 'ETHROTTLED'
  | 'ECLOCK_SKEW'
  | 'EHUB_ERROR'
  | 'ESTREAM_CLOSED'
  | 'EPTY_UNAVAILABLE'
  /** The external MQTT broker refused the hub or could not be reached (fleet mode). */
  | 'EBROKER'
  /** A peer broke the protocol or went over a limit (an oversized or retained MQTT packet). */
  | 'EPROTOCOL'
  | 'ECONFIG'
  /** A file or directory could not be created or written (read-only, permissions): sysexits 73. */
  | 'ECANTCREATE'
  /** Reading or writing a file failed midway (disk full, I/O error): sysexits 74. */
  | 'EFILE_IO'
  | 'EUSAGE';

export class DevstreamsError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'DevstreamsError';
  }
}

export function isDevstreamsError(err: unknown, code?: ErrorCode): err is DevstreamsError {
  return err instanceof DevstreamsError && (code === undefined || err.code === code);
}
