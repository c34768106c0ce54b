// What the TLS server serves and checks, read before it serves (at start, at reload, at
// renewal): the certificate and key (the operator's files, or the local CA's, issued in a child
// process when due) and the client-certificate policy (with the local CRL re-signed when due).

import { loadGivenCertificates } from '../certs/given-files';
import { ensureCertificatesInChild } from '../certs/issuer-process';
import type { TlsMaterial } from '../certs/tls-material';
import type { Config } from '../config/config';
import { loadClientAuth, refreshLocalCrl, type LoadedClientAuth } from '../mtls/client-auth';
import type { Logger } from '../ops/logger';

/** Loads the given certificate files, or makes sure the self-generated ones are there and fresh. */
export async function loadTlsMaterial(config: Config, logger: Logger, now = new Date()): Promise<TlsMaterial> {
  if (config.certFile !== undefined && config.keyFile !== undefined) {
    return loadGivenCertificates({ certFile: config.certFile, keyFile: config.keyFile, chainFile: config.chainFile });
  }
  const { material, action } = await ensureCertificatesInChild({
    certDir: config.certDir,
    sans: config.sans,
    keyType: config.keyType,
    certDays: config.certDays,
    now,
  });
  if (action !== 'reused') {
    logger.info(action === 'generated' ? 'generated a local CA and server certificate' : 'renewed the server certificate (same CA)', {
      certDir: config.certDir,
      notAfter: material.leaf.notAfter.toISOString(),
    });
  }
  return material;
}

/** Reads and checks the client-certificate policy, re-signing the local CRL first when it is due. */
export async function loadClientAuthPolicy(config: Config, material: TlsMaterial, logger: Logger, now = new Date()): Promise<LoadedClientAuth> {
  if (config.clientAuth === 'off') {
    if (config.clientCaFile !== undefined || config.clientCrlFile !== undefined) {
      logger.warn('--client-ca and --client-crl have no effect with --client-auth off: no client certificate is asked for');
    }
    return loadClientAuth(config, material, now);
  }
  if (await refreshLocalCrl(config.certDir, now)) logger.info('re-signed the client CRL', { certDir: config.certDir });
  return loadClientAuth(config, material, now);
}
