// The client certificate as a server saw it (mutual TLS), for `check` and `bench`: whether the
// server asked for one, what was sent, and, when the server refused, a message that says what
// happened and the likely cause.
//
// Two ways a server refuses. With an alert: OpenSSL-level refusals (no certificate when one is
// required; a certificate OpenSSL itself rejects). Without one: a Node server with requestCert
// and rejectUnauthorized (the daemon) checks the chain only after OpenSSL has finished the
// handshake, and then just closes the TCP connection. TLS 1.3 clients see that as EOF or
// ECONNRESET after 'secureConnect', before any echo; TLS 1.2 clients as ECONNRESET before it.

import type * as tls from 'node:tls';

/** The `clientCert` of a check result. */
export interface ClientCertState {
  /** The server sent a CertificateRequest. */
  readonly requested: boolean;
  /** The name of the certificate sent (`CN=alice`); null when none was sent. */
  readonly sent: string | null;
}

/**
 * Whether the server asked for a client certificate; undefined once the socket's TLS state is gone.
 *
 * Node has no event for a CertificateRequest, but OpenSSL computes the shared signature
 * algorithms on a client only when it processes one, so a non-empty list means the server asked
 * (Node 20, TLS 1.2 and 1.3: 20 and 14 entries when asked, none otherwise). A resumed session
 * has no CertificateRequest (the identity carries over from the first), so this reads false
 * there: callers that report it must make full handshakes.
 */
export function serverRequestedCertificate(socket: tls.TLSSocket): boolean | undefined {
  try {
    return socket.getSharedSigalgs().length > 0;
  } catch {
    // After the connection is torn down the TLS handle is gone and Node throws.
    return undefined;
  }
}

/** `check`'s report line for it: `not requested`, `requested; sent CN=alice`, `requested; none sent`. */
export function describeClientCertState(s: ClientCertState): string {
  if (!s.requested) return 'not requested';
  return s.sent === null ? 'requested; none sent' : `requested; sent ${s.sent}`;
}

/** The TLS alert in a Node error code (`ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED` -> `certificate required`). */
export function tlsAlertName(code: string): string | undefined {
  const m = /^ERR_SSL_(?:SSLV3|TLSV1|TLSV13|SSL\/TLS)_ALERT_([A-Z0-9_]+)$/.exec(code);
  return m === null ? undefined : m[1]!.toLowerCase().replace(/_/g, ' ');
}

/** The alerts a server sends about the client's certificate, and what each likely means for the one sent. */
const CERTIFICATE_ALERTS: Readonly<Record<string, (sent: string) => string>> = {
  'certificate required': (sent) => `it wanted a certificate and did not take ${sent} as one; see the server's log`,
  // The generic alert: only read as a refusal of the certificate when the server asked for one.
  'handshake failure': (sent) => `it did not accept ${sent}, or there is no signature algorithm in common; see the server's log`,
  'bad certificate': (sent) => `it could not use ${sent}: a bad signature, or a certificate it can't parse or verify; see the server's log`,
  'unsupported certificate': (sent) => `${sent} is not fit for client authentication: its (extended) key usage lacks clientAuth, or its key type is not accepted`,
  'certificate revoked': (sent) => `${sent} is revoked: get a new certificate`,
  'certificate expired': (sent) => `${sent} is expired or not yet valid by the server's clock: renew it, or check both clocks`,
  'certificate unknown': (sent) => `it did not accept ${sent}; see the server's log`,
  'unknown ca': (sent) => `it does not trust the CA that issued ${sent}: give a certificate from a CA the server trusts`,
  'access denied': (sent) => `it verified ${sent} but does not let it in: see the server's access rules`,
};

/**
 * The message for an error `code` that is a server's alert about the client certificate, or
 * undefined when it is not one. `requested` undefined: not known.
 */
export function refusalByAlert(code: string, requested: boolean | undefined, sent: string | null): string | undefined {
  const alert = tlsAlertName(code);
  const cause = alert === undefined ? undefined : CERTIFICATE_ALERTS[alert];
  if (alert === undefined || cause === undefined) return undefined;
  if (alert === 'handshake failure' && requested !== true) return undefined;
  return `server refused the client certificate: alert ${alert} (${sent === null ? 'no certificate sent; give --cert and --key' : cause(sent)})`;
}

/**
 * The message for a server that asked for a client certificate and then closed the connection
 * without an alert and before echoing: after 'secureConnect' (TLS 1.3) or before it (TLS 1.2).
 */
export function refusalByClose(afterHandshake: boolean, sent: string | null): string {
  const when = afterHandshake ? 'right after the handshake without echoing' : 'at the end of the handshake without an alert';
  const cause =
    sent === null ? 'none was sent (give --cert and --key)' : `it did not accept ${sent} (unknown CA, expired, revoked or wrong purpose; see the server's log)`;
  return `server closed the connection ${when}, having asked for a client certificate: ${cause}`;
}
