// Why a client certificate was refused, in one word for the log: the verify error OpenSSL left
// on the socket (Node's `authorizationError`) or the handshake error, grouped the way an operator
// acts on them.

/** What was wrong with a refused client certificate. */
export type ClientCertProblem = 'missing' | 'unknown-ca' | 'expired' | 'not-yet-valid' | 'revoked' | 'wrong-purpose' | 'crl' | 'invalid';

const PROBLEMS: Readonly<Record<string, ClientCertProblem>> = {
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: 'missing',
  UNABLE_TO_GET_ISSUER_CERT: 'unknown-ca',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unknown-ca',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unknown-ca',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'unknown-ca',
  SELF_SIGNED_CERT_IN_CHAIN: 'unknown-ca',
  CERT_SIGNATURE_FAILURE: 'unknown-ca',
  CERT_UNTRUSTED: 'unknown-ca',
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not-yet-valid',
  CERT_REVOKED: 'revoked',
  INVALID_PURPOSE: 'wrong-purpose',
  UNABLE_TO_GET_CRL: 'crl',
  CRL_HAS_EXPIRED: 'crl',
  CRL_NOT_YET_VALID: 'crl',
  CRL_SIGNATURE_FAILURE: 'crl',
  UNABLE_TO_DECRYPT_CRL_SIGNATURE: 'crl',
};

/** The problem behind a verify or handshake error code; `invalid` for anything else. */
export function clientCertProblem(code: string | null | undefined): ClientCertProblem {
  return (code !== null && code !== undefined && PROBLEMS[code]) || 'invalid';
}

/** Whether a handshake error means the client sent no certificate where one was required. */
export function isMissingClientCert(code: string | undefined): boolean {
  return code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE';
}
