// `tls-echod cert generate` and `tls-echod cert show`.

import type { Command } from 'commander';
import path from 'node:path';
import { loadGivenCertificates } from '../certs/given-files';
import type { CertInfo } from '../certs/inspect';
import { ensureCertificates, loadGeneratedCertificates } from '../certs/local-ca';
import type { TlsMaterial } from '../certs/tls-material';
import { loadConfig } from '../config/config';
import { addConfigOptions, configSources } from './options';

const CERT_OPTIONS = ['cert', 'key', 'chain', 'cert-dir', 'san', 'key-type', 'cert-days'];

export function register(program: Command): void {
  const cert = program.command('cert').description('generate or inspect the certificates the daemon serves');

  addConfigOptions(
    cert.command('generate').description('make the local CA and server certificate in --cert-dir (reuses valid ones unless --force)'),
    CERT_OPTIONS.filter((o) => !['cert', 'key', 'chain'].includes(o)),
  )
    .option('--force', 'make a new CA and leaf even if the current ones are valid')
    .option('--json', 'print JSON')
    .action(async (opts: Record<string, unknown>) => {
      const { force, json, ...rest } = opts;
      const config = loadConfig(configSources(rest));
      const { material, action } = await ensureCertificates({
        certDir: config.certDir,
        sans: config.sans,
        keyType: config.keyType,
        certDays: config.certDays,
        force: force === true,
      });
      print(material, json === true, `${action} (${path.resolve(config.certDir)})`);
    });

  addConfigOptions(cert.command('show').description('print subject, SANs, expiry, fingerprints and SPKI pin of the served certificate'), CERT_OPTIONS)
    .option('--json', 'print JSON')
    .action((opts: Record<string, unknown>) => {
      const { json, ...rest } = opts;
      const config = loadConfig(configSources(rest));
      const material =
        config.certFile !== undefined && config.keyFile !== undefined
          ? loadGivenCertificates({ certFile: config.certFile, keyFile: config.keyFile, chainFile: config.chainFile })
          : loadGeneratedCertificates(config.certDir);
      print(material, json === true, material.source === 'given' ? config.certFile! : path.resolve(config.certDir));
    });
}

function print(material: TlsMaterial, json: boolean, heading: string): void {
  if (json) {
    process.stdout.write(JSON.stringify({ source: material.source, leaf: material.leaf, ca: material.caInfo ?? null }, null, 2) + '\n');
    return;
  }
  const lines = [`certificate: ${material.source}, ${heading}`, ...describe('leaf', material.leaf)];
  if (material.caInfo) lines.push(...describe('ca', material.caInfo));
  process.stdout.write(lines.join('\n') + '\n');
}

function describe(label: string, info: CertInfo): string[] {
  return [
    `${label}:`,
    `  subject:      ${info.subject}`,
    `  issuer:       ${info.issuer}`,
    `  sans:         ${info.sans.length > 0 ? info.sans.join(', ') : '(none)'}`,
    `  key:          ${info.keyType}`,
    `  not before:   ${info.notBefore.toISOString()}`,
    `  not after:    ${info.notAfter.toISOString()}`,
    `  sha256:       ${info.fingerprint256}`,
    `  spki pin:     sha256//${info.spkiPin}`,
  ];
}
