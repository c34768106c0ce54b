// TlsMaterial: what the TLS server is given, the same whichever way it came (a local CA's leaf,
// local-ca.ts, or the operator's files, given-files.ts). The supervisor holds one and hands it
// to the workers; `cert show` prints it.

import type { KeyObject } from 'node:crypto';
import type { CertInfo } from './inspect';

export interface TlsMaterial {
  /** PEM private key of the leaf. */
  key: string;
  /** PEM leaf followed by the chain (what tls.createSecureContext `cert` wants). */
  cert: string;
  /** PEM CA certificate when self-generated (or the first chain certificate if given), for display. */
  ca: string | undefined;
  leaf: CertInfo;
  caInfo: CertInfo | undefined;
  source: 'generated' | 'given';
}

/** A private key as unencrypted PKCS#8 PEM: the form of TlsMaterial.key and of the key files in --cert-dir. */
export function exportKey(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}
