// A fatal TLS alert sent in plaintext, for refusing a connection whose ClientHello was read
// but which no TLS server will take. Before the ServerHello nothing is encrypted yet, so a
// client mid-handshake reads a plaintext alert record as the end of the handshake, with the
// reason, rather than as a bare reset (OpenSSL: "tlsv1 unrecognized name", SSL alert number 112).

/** RFC 6066 3: no server for the name the client sent (or it sent none and one is needed). */
export const UNRECOGNIZED_NAME = 112;
/** RFC 8446 6.2: no acceptable set of parameters; the generic refusal of a handshake. */
export const HANDSHAKE_FAILURE = 40;

const CONTENT_TYPE_ALERT = 21;
const ALERT_LEVEL_FATAL = 2;
const ALERT_BYTES = 2;

/**
 * A fatal alert record with `description` (0-255). `version` is the record's legacy version
 * (default 0x0303, what TLS 1.2 and 1.3 use; clients accept any 3.x before the ServerHello).
 */
export function alertRecord(description: number, version = 0x0303): Buffer {
  if (!Number.isInteger(description) || description < 0 || description > 0xff) {
    throw new RangeError(`alert description ${description}: give an integer 0-255`);
  }
  if (!Number.isInteger(version) || version < 0x0300 || version > 0x03ff) {
    throw new RangeError(`record version 0x${version.toString(16)}: give 0x0300-0x03ff`);
  }
  return Buffer.from([CONTENT_TYPE_ALERT, version >> 8, version & 0xff, 0, ALERT_BYTES, ALERT_LEVEL_FATAL, description]);
}
