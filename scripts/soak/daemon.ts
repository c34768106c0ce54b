// The daemon under test: certificates made with the CLI into the run's directory, then
// `tls-echod serve` as a child with two workers, PROXY protocol from 127.0.0.1, the scenario
// and admin listeners, client certificates requested, short timeouts and modest per-client
// limits (settings.ts), its JSON log going to daemon.log. The certificate is served from files
// (--cert/--key) so a rotation is new files and a SIGHUP; a broken one is garbage in the file.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, copyFileSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { requireGeneratedPair } from '../../src/certs/cert-dir';
import { createLeaf } from '../../src/certs/issue';
import { leafValidity } from '../../src/certs/local-ca';
import { freePort } from '../bench/ports';
import { DaemonLog } from './daemon-log';
import { scrapeMetrics } from './metrics-text';
import { DAEMON_LIMITS, DAEMON_TIMEOUTS } from './settings';

const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli.js');
export const SCENARIO_DOMAIN = 'scenarios.test';
/** The name clients ask for; the generated leaf (and every rotated one) carries it. */
export const SERVER_NAME = 'localhost';
const LEAF_NAMES = ['localhost', '127.0.0.1', '::1'];

export interface DaemonFiles {
  readonly certDir: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly ca: Buffer;
  readonly clientCert: { readonly cert: Buffer; readonly key: Buffer };
}

/** The local CA, a leaf copied to the served files, and a client certificate, all under outDir. */
export function makeCertificates(outDir: string): DaemonFiles {
  const certDir = path.join(outDir, 'certs');
  const cli = (...args: string[]): void => {
    const r = spawnSync(process.execPath, [CLI, 'cert', ...args, '--cert-dir', certDir], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tls-echod cert ${args.join(' ')}: ${r.stderr.trim()}`);
  };
  cli('generate');
  cli('client', 'soak-client', '--force');
  const served = path.join(outDir, 'served');
  mkdirSync(served, { recursive: true });
  const certFile = path.join(served, 'cert.pem');
  const keyFile = path.join(served, 'key.pem');
  copyFileSync(path.join(certDir, 'server.pem'), certFile);
  copyFileSync(path.join(certDir, 'server-key.pem'), keyFile);
  return {
    certDir,
    certFile,
    keyFile,
    ca: readFileSync(path.join(certDir, 'ca.pem')),
    clientCert: { cert: readFileSync(path.join(certDir, 'clients', 'soak-client.pem')), key: readFileSync(path.join(certDir, 'clients', 'soak-client-key.pem')) },
  };
}

export interface DaemonPorts {
  readonly main: number;
  readonly scenarios: number;
  readonly admin: number;
}

export class DaemonUnderTest {
  /** Set when the daemon exits: before stop() that is a failure. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private stopping = false;
  /** The PEM the served files hold now (the last good one). */
  private servedCert: string;
  private servedKey: string;

  private constructor(
    readonly child: ChildProcess,
    readonly ports: DaemonPorts,
    readonly files: DaemonFiles,
    readonly log: DaemonLog,
    readonly stderrFile: string,
  ) {
    this.servedCert = readFileSync(files.certFile, 'utf8');
    this.servedKey = readFileSync(files.keyFile, 'utf8');
    child.once('exit', (code, signal) => (this.exit = { code, signal }));
  }

  /** Starts the daemon and waits until /metrics answers with both workers ready. */
  static async start(outDir: string, files: DaemonFiles): Promise<DaemonUnderTest> {
    const ports: DaemonPorts = { main: await freePort(), scenarios: await freePort(), admin: await freePort() };
    const logFile = path.join(outDir, 'daemon.log');
    const stderrFile = path.join(outDir, 'daemon.stderr');
    const out = openSync(logFile, 'w');
    const err = openSync(stderrFile, 'w');
    const t = DAEMON_TIMEOUTS;
    const l = DAEMON_LIMITS;
    const args = [
      CLI, 'serve',
      '--listen', `127.0.0.1:${ports.main}`,
      '--workers', '2',
      '--proxy-protocol', '--trusted-proxy', '127.0.0.1/32',
      '--scenarios', `127.0.0.1:${ports.scenarios}`, '--scenario-domain', SCENARIO_DOMAIN,
      '--admin', `127.0.0.1:${ports.admin}`,
      '--client-auth', 'request', '--client-ca', path.join(files.certDir, 'ca.pem'),
      '--cert', files.certFile, '--key', files.keyFile, '--cert-dir', files.certDir,
      '--handshake-timeout', String(t.handshakeMs), '--idle-timeout', String(t.idleMs),
      '--pending-timeout', String(t.pendingMs), '--drain-timeout', String(t.drainMs),
      '--max-sessions', String(l.maxSessions), '--max-pending', String(l.maxPending),
      '--conn-rate', String(l.connRate), '--conn-burst', String(l.connBurst), '--max-conns-per-ip', String(l.maxConnsPerIp),
      '--log-format', 'json', '--log-level', 'info',
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', out, err] });
    closeSync(out);
    closeSync(err);
    const daemon = new DaemonUnderTest(child, ports, files, new DaemonLog(logFile), stderrFile);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (daemon.exit !== undefined) throw new Error(`the daemon exited at start (code ${daemon.exit.code}): ${readFileSync(stderrFile, 'utf8').slice(0, 2000)}`);
      if (Date.now() > deadline) throw new Error('the daemon was not ready within 30 s');
      const ready = await scrapeMetrics('127.0.0.1', ports.admin, 1000).then((m) => m.get('tls_echod_workers_ready') ?? 0, () => 0);
      if (ready >= 2) return daemon;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Whether the daemon exited without being asked to. */
  get exitedUnasked(): boolean {
    return this.exit !== undefined && !this.stopping;
  }

  scrape(): Promise<Map<string, number>> {
    return scrapeMetrics('127.0.0.1', this.ports.admin);
  }

  /** The worker processes: the supervisor's children running worker.js (not the cert one-shots). */
  workerPids(): number[] {
    let children: number[];
    try {
      children = readFileSync(`/proc/${this.pid}/task/${this.pid}/children`, 'utf8').trim().split(/\s+/).filter((s) => s !== '').map(Number);
    } catch {
      return [];
    }
    return children.filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('worker.js');
      } catch {
        return false;
      }
    });
  }

  /** kill -9 one worker; its pid, or undefined when none was found. */
  killWorker(pick: (pids: number[]) => number | undefined): number | undefined {
    const pids = this.workerPids();
    const pid = pids.length === 0 ? undefined : pick(pids);
    if (pid === undefined) return undefined;
    process.kill(pid, 'SIGKILL');
    return pid;
  }

  /** A new leaf from the same CA written to the served files, then SIGHUP; the new leaf's SHA-256 fingerprint. */
  async rotateCertificate(): Promise<string> {
    const ca = requireGeneratedPair(this.files.certDir, 'ca');
    const leaf = await createLeaf(ca, LEAF_NAMES, 'ecdsa-p256', leafValidity(new Date(), 30));
    this.writeServed(leaf.certPem, leaf.keyPem);
    this.sighup();
    return leaf.cert.fingerprint256;
  }

  /** Garbage in the served certificate file, then SIGHUP: the reload must fail and the old one keep serving. */
  breakCertificate(): void {
    writeFileSync(this.files.certFile, '-----BEGIN CERTIFICATE-----\nbroken by the soak\n-----END CERTIFICATE-----\n');
    this.sighup();
  }

  /** The last good certificate back in the files (no reload: the daemon still serves it). */
  restoreCertificate(): void {
    this.writeServed(this.servedCert, this.servedKey);
  }

  private writeServed(certPem: string, keyPem: string): void {
    // Key first, then certificate: a reload never sees a new certificate with the old key.
    writeFileSync(this.files.keyFile, keyPem, { mode: 0o600 });
    writeFileSync(this.files.certFile, certPem);
    this.servedCert = certPem;
    this.servedKey = keyPem;
  }

  private sighup(): void {
    process.kill(this.pid, 'SIGHUP');
  }

  /** SIGTERM, then SIGKILL after 15 s; resolves with the exit. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.stopping = true;
    if (this.exit === undefined) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
      await once(this.child, 'exit');
      clearTimeout(timer);
    }
    return this.exit!;
  }
}

/** Descriptors open in `pid` (entries of /proc/<pid>/fd), or undefined if it's gone. */
export function descriptorsOf(pid: number): number | undefined {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return undefined;
  }
}

/** What each descriptor of `pid` points at (`3 -> socket:[123]`), for a report. */
export function listDescriptors(pid: number): string[] {
  try {
    return readdirSync(`/proc/${pid}/fd`).map((fd) => `${fd} -> ${readlinkOrGone(`/proc/${pid}/fd/${fd}`)}`);
  } catch {
    return [];
  }
}

function readlinkOrGone(file: string): string {
  try {
    return readlinkSync(file);
  } catch {
    return '(gone)';
  }
}

/** VmRSS of `pid` in bytes, or undefined if it's gone. */
export function rssOf(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}
