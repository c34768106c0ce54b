// The systemd units and their install: systemd-analyze verify / security on the units, the
// socket's options and the unit's environment, the daemon socket-activated under the unit's
// system call filter, and scripts/install.sh into a staging root. Socket activation and
// notifications in the daemon itself: systemd.test.ts.
// Tests that need a tool this machine lacks skip with the reason.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { loadConfig } from '../../src/config/config';
import { notifyReceiver } from '../helpers/notify-socket';
import { freePort, tempDir } from '../helpers/daemon';
import { spawnOwned, waitForOutput, which } from '../helpers/external-tools';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI_JS = path.join(ROOT, 'dist', 'src', 'cli.js');
const UNIT_DIR = path.join(ROOT, 'systemd');

// ---------------------------------------------------------------------------------------------
// helpers

/** Runs systemd-analyze; undefined when it is not installed. */
function systemdAnalyze(args: readonly string[]): { status: number | null; stdout: string; stderr: string } | undefined {
  if (which('systemd-analyze') === undefined) return undefined;
  const r = spawnSync('systemd-analyze', args, { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/**
 * Copies the units to a temp dir with ExecStart='s binary replaced by one that exists here
 * (`systemd-analyze verify` checks that it is executable; /usr/local/bin/tls-echod exists only
 * after install.sh). Names stay the same: the socket's Service= refers to the service by name.
 */
function unitsForVerify(t: TestContext): { service: string; socket: string } {
  const dir = tempDir(t);
  const service = path.join(dir, 'tls-echod.service');
  const socket = path.join(dir, 'tls-echod.socket');
  const text = readFileSync(path.join(UNIT_DIR, 'tls-echod.service'), 'utf8');
  const rewritten = text.replace(/^ExecStart=\/usr\/local\/bin\/tls-echod /m, `ExecStart=${process.execPath} `);
  assert.notEqual(rewritten, text, 'ExecStart= no longer starts with /usr/local/bin/tls-echod: update this test and install.sh');
  writeFileSync(service, rewritten);
  writeFileSync(socket, readFileSync(path.join(UNIT_DIR, 'tls-echod.socket')));
  return { service, socket };
}

/** Skips the test (and returns false) when `systemd-analyze verify` fails even on a trivial unit. */
function verifyWorksHere(t: TestContext): boolean {
  const dir = tempDir(t);
  const unit = path.join(dir, 'probe.service');
  writeFileSync(unit, `[Service]\nExecStart=${process.execPath} --version\n`);
  const r = systemdAnalyze(['verify', unit]);
  if (r === undefined) {
    t.skip('systemd-analyze is not installed');
    return false;
  }
  if (r.status !== 0) {
    t.skip(`systemd-analyze verify fails on a trivial unit here (environment): ${r.stderr.trim()}`);
    return false;
  }
  return true;
}

/** The unit's SystemCallFilter= lines expanded like systemd does (allow list, then ~ removes). */
function unitSyscallAllowList(serviceText: string): string[] {
  const groups = new Map<string, string[]>();
  const expand = (name: string): string[] => {
    if (!name.startsWith('@')) return [name];
    const cached = groups.get(name);
    if (cached) return cached;
    const r = systemdAnalyze(['syscall-filter', name]);
    assert.ok(r && r.status === 0, `systemd-analyze syscall-filter ${name} failed: ${r?.stderr}`);
    const out: string[] = [];
    for (const line of r.stdout.split('\n').slice(1)) {
      const item = line.trim();
      if (item === '' || item.startsWith('#')) continue;
      out.push(...expand(item));
    }
    groups.set(name, out);
    return out;
  };
  let allowed: Set<string> | undefined;
  for (const m of serviceText.matchAll(/^SystemCallFilter=(.*)$/gm)) {
    const value = m[1]!.trim();
    const deny = value.startsWith('~');
    const names = (deny ? value.slice(1) : value).split(/\s+/).filter((n) => n !== '').flatMap(expand);
    if (allowed === undefined) {
      assert.ok(!deny, 'the first SystemCallFilter= should be an allow list');
      allowed = new Set(names);
    } else if (deny) {
      for (const n of names) allowed.delete(n);
    } else {
      for (const n of names) allowed.add(n);
    }
  }
  assert.ok(allowed, 'tls-echod.service has no SystemCallFilter=');
  return [...allowed];
}

// Installs the allow list with libseccomp (default action EPERM, as SystemCallErrorNumber=EPERM
// in the unit) and execs the rest of argv: same pid, so LISTEN_PID still matches.
const SECCOMP_EXEC = `
import errno, os, sys, seccomp
f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
for name in open(sys.argv[1]).read().split():
    try:
        f.add_rule(seccomp.ALLOW, name)
    except Exception:
        pass  # not a system call on this architecture
f.load()
os.execv(sys.argv[2], sys.argv[2:])
`;

/** A python3 that has libseccomp bindings (Debian: python3-seccomp), or undefined. */
function seccompPython(): string | undefined {
  for (const python of ['/usr/bin/python3', which('python3')]) {
    if (python === undefined || !existsSync(python)) continue;
    if (spawnSync(python, ['-c', 'import seccomp'], { timeout: 10_000 }).status === 0) return python;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// units

test('units: systemd-analyze verify is clean for tls-echod.service and tls-echod.socket', { timeout: 60_000 }, (t) => {
  if (!verifyWorksHere(t)) return;
  const { service, socket } = unitsForVerify(t);
  const r = systemdAnalyze(['verify', service, socket])!;
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), '', 'verify printed warnings');
});

test('units: systemd-analyze security --offline rates tls-echod.service 1.5 or lower', { timeout: 60_000 }, (t) => {
  if (!verifyWorksHere(t)) return;
  const probe = systemdAnalyze(['security', '--offline=true', path.join(UNIT_DIR, 'tls-echod.socket')])!;
  if (/unrecognized option|unknown option/i.test(probe.stderr)) return t.skip(`systemd-analyze security has no --offline here: ${probe.stderr.trim()}`);
  const { service } = unitsForVerify(t);
  const r = systemdAnalyze(['security', '--offline=true', service])!;
  const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(r.stdout);
  assert.ok(m, `no "Overall exposure level" line:\n${r.stdout}\n${r.stderr}`);
  const score = Number(m[1]);
  t.diagnostic(`systemd-analyze security: ${score}`);
  assert.ok(score <= 1.5, `exposure ${score} > 1.5:\n${r.stdout.split('\n').filter((l) => l.startsWith('✗')).join('\n')}`);
});

test('units: the socket passes a stream socket with TCP_NODELAY; config.json and the unit env are valid options', () => {
  const socket = readFileSync(path.join(UNIT_DIR, 'tls-echod.socket'), 'utf8');
  for (const line of ['ListenStream=4433', 'Accept=no', 'NoDelay=true', 'Backlog=4096', 'Service=tls-echod.service']) {
    assert.match(socket, new RegExp(`^${line}$`, 'm'));
  }
  const service = readFileSync(path.join(UNIT_DIR, 'tls-echod.service'), 'utf8');
  assert.doesNotMatch(service, /^MemoryDenyWriteExecute=yes/m, "V8's JIT needs W+X memory");
  assert.doesNotMatch(service, /^PrivateNetwork=yes/m);
  // An unknown key in config.json or TLS_ECHOD_* in the unit would stop the daemon at start.
  const env: NodeJS.ProcessEnv = {};
  for (const m of service.matchAll(/^Environment=(TLS_ECHOD_[A-Z_]+)=(.*)$/gm)) env[m[1]!] = m[2]!.replace('%S', '/var/lib');
  assert.deepEqual(Object.keys(env).sort(), ['TLS_ECHOD_CERT_DIR', 'TLS_ECHOD_LOG_FORMAT']);
  const config = loadConfig({ flags: {}, env, configFile: path.join(UNIT_DIR, 'config.json') });
  assert.equal(config.certDir, '/var/lib/tls-echod');
  assert.equal(config.logFormat, 'json');
  assert.equal(config.drainTimeoutMs, 10_000, 'TimeoutStopSec=20 in the unit is sized for a 10 s drain');
});

test("units: the daemon, socket-activated under the unit's system call filter, echoes, reloads and stops", { timeout: 90_000 }, async (t) => {
  const activate = which('systemd-socket-activate');
  if (activate === undefined) return t.skip('systemd-socket-activate is not installed (Debian: systemd)');
  if (which('systemd-notify') === undefined) return t.skip('systemd-notify is not installed (Debian: systemd)');
  if (which('python3') === undefined) return t.skip('python3 is needed to hold a unix datagram socket');
  if (!existsSync(CLI_JS)) return t.skip(`${CLI_JS} is missing: build first`);
  const python = seccompPython();
  if (python === undefined) t.diagnostic('python3 has no seccomp module (Debian: python3-seccomp): running without the syscall filter');
  if (python !== undefined && which('systemd-analyze') === undefined) return t.skip('systemd-analyze is needed to expand the syscall filter');

  const dir = tempDir(t);
  const rx = await notifyReceiver(t);
  const port = await freePort();
  const command: string[] = [process.execPath, CLI_JS, 'serve', '--config', path.join(UNIT_DIR, 'config.json')];
  if (python !== undefined) {
    const allowFile = path.join(dir, 'allowed-syscalls');
    writeFileSync(allowFile, unitSyscallAllowList(readFileSync(path.join(UNIT_DIR, 'tls-echod.service'), 'utf8')).join('\n'));
    command.unshift(python, '-c', SECCOMP_EXEC, allowFile);
  }
  const certDir = path.join(dir, 'state');
  mkdirSync(certDir, { mode: 0o700 });
  const child = spawnOwned(
    t,
    activate,
    [
      '-l', `127.0.0.1:${port}`, '--fdname=tls-echod.socket',
      '-E', `NOTIFY_SOCKET=${rx.socketPath}`, '-E', 'WATCHDOG_USEC=400000',
      '-E', `TLS_ECHOD_CERT_DIR=${certDir}`, '-E', 'TLS_ECHOD_LOG_FORMAT=json', '-E', 'TLS_ECHOD_WORKERS=2',
      ...command,
    ],
    { PATH: process.env.PATH, HOME: dir },
  );
  let log = '';
  child.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  await waitForOutput(child.stderr!, (s) => s.includes('Listening on'), 10_000, 'systemd-socket-activate "Listening on"');

  // The first connection makes systemd-socket-activate exec the daemon (as systemd would).
  const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
  t.after(() => socket.destroy());
  await once(socket, 'secureConnect');
  socket.write('echo me');
  const [echoed] = (await once(socket, 'data')) as [Buffer];
  assert.equal(echoed.toString(), 'echo me');
  socket.end();
  const ca = readFileSync(path.join(certDir, 'ca.pem'));
  assert.equal(socket.getPeerX509Certificate()?.verify(new X509Certificate(ca).publicKey), true, 'leaf signed by the CA in TLS_ECHOD_CERT_DIR');

  const lifecycle = (): string[] => rx.messages.filter((m) => /^(READY|RELOADING|STOPPING)=/.test(m)).map((m) => m.split('\n')[0]!);
  await rx.until(() => lifecycle().length >= 1 && rx.messages.includes('WATCHDOG=1'));
  child.kill('SIGHUP');
  await rx.until(() => lifecycle().length >= 3);
  child.kill('SIGTERM');
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0, log);
  assert.deepEqual(lifecycle(), ['READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1'], log);
  assert.match(log, /"socketActivated":true/);
});

// ---------------------------------------------------------------------------------------------
// install.sh

test('install: --dest-dir --no-build stages program, wrapper, units and config; idempotent; --uninstall keeps the config', { timeout: 120_000 }, (t) => {
  if (which('bash') === undefined || which('npm') === undefined) return t.skip('bash and npm are needed');
  if (!existsSync(CLI_JS) || !existsSync(path.join(ROOT, 'node_modules'))) return t.skip('needs a built tree (dist/, node_modules/)');
  const stage = tempDir(t);
  const run = (...args: string[]): string => {
    const r = spawnSync('bash', [path.join(ROOT, 'scripts', 'install.sh'), '--dest-dir', stage, '--no-build', '--prefix', '/opt/tls-echod-test', ...args], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, NODE: process.execPath },
    });
    assert.equal(r.status, 0, `install.sh ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  const lib = path.join(stage, 'opt/tls-echod-test/lib/tls-echod');
  const bin = path.join(stage, 'opt/tls-echod-test/bin/tls-echod');
  const config = path.join(stage, 'etc/tls-echod/config.json');
  const service = path.join(stage, 'etc/systemd/system/tls-echod.service');

  run();
  assert.match(readFileSync(bin, 'utf8'), new RegExp(`exec '${process.execPath}' '/opt/tls-echod-test/lib/tls-echod/dist/src/cli.js' "\\$@"`));
  assert.equal(statSync(bin).mode & 0o777, 0o755);
  assert.match(readFileSync(service, 'utf8'), /^ExecStart=\/opt\/tls-echod-test\/bin\/tls-echod serve --config \/etc\/tls-echod\/config.json$/m);
  assert.ok(existsSync(path.join(stage, 'etc/systemd/system/tls-echod.socket')));
  assert.equal(statSync(config).mode & 0o777, 0o644, 'the DynamicUser must be able to read it');
  assert.ok(!existsSync(path.join(lib, 'node_modules', 'typescript')), 'dev dependencies must not be installed');
  const help = spawnSync(process.execPath, [path.join(lib, 'dist/src/cli.js'), '--help'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /serve/);

  writeFileSync(config, '{"listen": "127.0.0.1:9999"}\n');
  assert.match(run(), /kept the existing \/etc\/tls-echod\/config.json/);
  assert.equal(readFileSync(config, 'utf8'), '{"listen": "127.0.0.1:9999"}\n', 'a second install must not overwrite the config');

  run('--uninstall');
  run('--uninstall');
  assert.ok(!existsSync(lib) && !existsSync(bin) && !existsSync(service));
  assert.ok(existsSync(config), '--uninstall keeps the config');
});
