// `tls-echod cert generate`, `cert show`, `cert client` and `cert revoke`.

import type { Command } from 'commander';
import path from 'node:path';
import { loadGivenCertificates } from '../certs/given-files';
import type { CertInfo } from '../certs/inspect';
import { ensureCertificates, loadGeneratedCertificates } from '../certs/local-ca';
import type { TlsMaterial } from '../certs/tls-material';
import { CLIENT_CERT_DAYS, issueClientCertificate } from '../mtls/client-cert';
import { revokeClientCertificate, type RevokeResult } from '../mtls/revoke';
import { formatHostPort, loadConfig, reachableHost, type Config } from '../config/config';
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

  addConfigOptions(
    cert
      .command('client')
      .description('issue a client certificate and key from the local CA in --cert-dir (CN=<name>, for mutual TLS)')
      .argument('<name>', "the certificate's CN, and its file name: letters, digits, '.', '_', '-'"),
    ['cert-dir', 'key-type', 'listen'],
  )
    .option('--days <n>', `lifetime in days [default: ${CLIENT_CERT_DAYS.default}]`)
    .option('--out <prefix>', 'write <prefix>.pem and <prefix>-key.pem [default: <cert-dir>/clients/<name>]')
    .option('--force', 'replace existing files')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: Record<string, unknown>) => {
      const { days, out, force, json, ...rest } = opts;
      const config = loadConfig(configSources(rest));
      const issued = await issueClientCertificate({
        certDir: config.certDir,
        name,
        keyType: config.keyType,
        days: days === undefined ? undefined : Number(days),
        out: out as string | undefined,
        force: force === true,
      });
      const { info } = issued;
      if (json === true) {
        const { certFile, keyFile, caFile } = issued;
        process.stdout.write(JSON.stringify({ certFile, keyFile, caFile, subject: info.subject, serial: info.serial, fingerprint256: info.fingerprint256, notAfter: info.notAfter }, null, 2) + '\n');
        return;
      }
      process.stdout.write(
        [
          `client certificate: ${info.subject}, issued by ${info.issuer}`,
          `  certificate:  ${issued.certFile}`,
          `  key:          ${issued.keyFile}`,
          `  serial:       ${info.serial}`,
          `  sha256:       ${info.fingerprint256}`,
          `  not after:    ${info.notAfter.toISOString()}`,
          '',
          `Use it (a server that asks for a client certificate must trust ${issued.caFile}):`,
          ...clientUsage(config, issued.caFile, issued.certFile, issued.keyFile).map((line) => `  ${line}`),
        ].join('\n') + '\n',
      );
    });

  addConfigOptions(
    cert
      .command('revoke')
      .description('revoke a client certificate: add it to <cert-dir>/client.crl, signed by the local CA')
      .argument('<name|serial-hex>', 'a name `cert client` issued (<cert-dir>/clients/<name>.pem), or a serial in hex (0x and colons allowed)'),
    ['cert-dir'],
  )
    .option('--json', 'print JSON')
    .action(async (target: string, opts: Record<string, unknown>) => {
      const { json, ...rest } = opts;
      const config = loadConfig(configSources(rest));
      const result = await revokeClientCertificate({ certDir: config.certDir, target });
      if (json === true) {
        const { serial, subject, crlFile, alreadyRevoked, nextUpdate } = result;
        process.stdout.write(JSON.stringify({ serial, subject: subject ?? null, crlFile, alreadyRevoked, nextUpdate, reload: RELOAD_HINT }, null, 2) + '\n');
        return;
      }
      process.stdout.write(describeRevocation(result).join('\n') + '\n');
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

/** How a running daemon picks up a new client.crl: it reloads on SIGHUP. */
const RELOAD_HINT = 'systemctl reload tls-echod, or kill -HUP <pid> of the daemon';

function describeRevocation(result: RevokeResult): string[] {
  const what = result.subject === undefined ? `serial ${result.serial}` : `${result.subject} (serial ${result.serial})`;
  return [
    result.alreadyRevoked ? `already revoked: ${what}; the CRL is unchanged` : `revoked: ${what}`,
    `  crl:          ${result.crlFile}`,
    `  next update:  ${result.nextUpdate.toISOString()}`,
    '',
    `A running daemon picks it up when it reloads: ${RELOAD_HINT}.`,
  ];
}

/** Copy-paste lines that connect to the daemon at --listen with the client certificate. */
function clientUsage(config: Config, caFile: string, certFile: string, keyFile: string): string[] {
  const { port } = config.listen;
  const host = reachableHost(config.listen.host);
  const [ca, cert, key] = [caFile, certFile, keyFile].map(shellQuote);
  const py = (p: string): string => JSON.stringify(p).replace(/'/g, "'\\''");
  return [
    `openssl s_client -connect ${formatHostPort(host, port)} -CAfile ${ca} -cert ${cert} -key ${key} -verify_return_error -quiet`,
    `ncat --ssl --ssl-verify --ssl-trustfile ${ca} --ssl-cert ${cert} --ssl-key ${key} ${host} ${port}`,
    `python3 -c 'import socket, ssl; c = ssl.create_default_context(cafile=${py(caFile)}); c.load_cert_chain(${py(certFile)}, ${py(keyFile)}); ` +
      `s = c.wrap_socket(socket.create_connection((${py(host)}, ${port})), server_hostname=${py(host)}); s.sendall(b"hello\\n"); print(s.recv(64))'`,
  ];
}

/** `text` as one shell word: as is when it holds only safe characters, else single-quoted. */
function shellQuote(text: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}
