// --cert and --key of `check` and `bench`: the client certificate they present when a server asks
// for one (mutual TLS). Read once and checked here (both given, PEM, the key matches) so that a bad
// file is a usage error (exit 2) naming the flag and the file, before anything connects. An
// expired certificate is presented anyway: seeing a server refuse one is a test worth running.

import type { Command } from 'commander';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ClientCertificate } from '../client/check-options';
import { splitPemCertificates } from '../certs/inspect';
import { systemErrorCode } from '../errors';

export interface ClientCertFlags {
  cert?: string;
  key?: string;
}

const CERT_HINT = 'give a PEM client certificate, e.g. certs/clients/alice.pem from: tls-echod cert client alice';
const KEY_HINT = 'give the PEM private key of --cert, e.g. certs/clients/alice-key.pem';

/** Adds --cert and --key to a client command. */
export function addClientCertOptions(command: Command): Command {
  return command
    .option('--cert <pem>', 'present this PEM client certificate when the server asks for one (mutual TLS; needs --key) [default: none]')
    .option('--key <pem>', 'PEM private key of --cert, unencrypted [default: none]');
}

/** Reads --cert and --key; undefined when neither is given (or they are unusable, with problems noted). */
export function readClientCert(flags: ClientCertFlags, problems: string[]): ClientCertificate | undefined {
  const { cert: certFile, key: keyFile } = flags;
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (keyFile === undefined) {
    problems.push(`--cert ${certFile} needs --key: ${KEY_HINT} (or leave --cert out to present no certificate)`);
    return undefined;
  }
  if (certFile === undefined) {
    problems.push(`--key ${keyFile} needs --cert: ${CERT_HINT} (or leave --key out to present no certificate)`);
    return undefined;
  }
  const certPem = readPemFile('--cert', certFile, CERT_HINT, problems);
  const keyPem = readPemFile('--key', keyFile, KEY_HINT, problems);
  const leaf = certPem === undefined ? undefined : parseLeaf(certFile, certPem, problems);
  const key = keyPem === undefined ? undefined : parseKey(keyFile, keyPem, problems);
  if (leaf === undefined || key === undefined) return undefined;
  if (!leaf.checkPrivateKey(key)) {
    problems.push(`--key ${keyFile} does not match --cert ${certFile} (give the private key the certificate was issued for)`);
    return undefined;
  }
  return { cert: certPem!, key: keyPem!, name: certificateName(leaf) };
}

/** `CN=alice`; the whole subject (`O=x, OU=y`) when it has no CN. */
export function certificateName(cert: X509Certificate): string {
  const rdns = cert.subject.split('\n').filter((rdn) => rdn !== '');
  return rdns.find((rdn) => rdn.startsWith('CN=')) ?? (rdns.length > 0 ? rdns.join(', ') : '(empty subject)');
}

function readPemFile(flag: string, file: string, hint: string, problems: string[]): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = systemErrorCode(err);
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (err as Error).message;
    problems.push(`${flag} ${file}: ${why} (${hint})`);
    return undefined;
  }
}

function parseLeaf(file: string, pem: string, problems: string[]): X509Certificate | undefined {
  const first = splitPemCertificates(pem)[0];
  if (first === undefined) {
    problems.push(`--cert ${file}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----; convert DER with openssl x509 -inform der)`);
    return undefined;
  }
  try {
    return new X509Certificate(first);
  } catch (err) {
    problems.push(`--cert ${file}: not a valid certificate (${(err as Error).message}); ${CERT_HINT}`);
    return undefined;
  }
}

function parseKey(file: string, pem: string, problems: string[]): KeyObject | undefined {
  if (/-----BEGIN (?:ENCRYPTED PRIVATE KEY|[A-Z ]+PRIVATE KEY-----\r?\nProc-Type: 4,ENCRYPTED)/.test(pem)) {
    problems.push(`--key ${file}: the key is encrypted (give it unencrypted: openssl pkey -in ${file} -out plain-key.pem)`);
    return undefined;
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    problems.push(`--key ${file}: no PEM private key in it (expected -----BEGIN PRIVATE KEY-----; ${KEY_HINT})`);
    return undefined;
  }
  try {
    return createPrivateKey(pem);
  } catch (err) {
    problems.push(`--key ${file}: not a usable private key (${(err as Error).message}); ${KEY_HINT}`);
    return undefined;
  }
}
