// The CLI as a user meets it: serve announces how to reach it, `check` verifies the echo,
// `cert show` agrees with what is served, a restart reuses the certificates, signals stop it.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { test } from 'node:test';
import path from 'node:path';
import { runCli, spawnDaemon, tempDir } from './helpers/daemon';

test('cli: serve announces the address, fingerprints and the openssl command; check passes; restart reuses the certificates', async (t) => {
  const dir = tempDir(t);
  const first = await spawnDaemon(t, ['--cert-dir', dir, '--workers', '0']);
  const listening = first.lines.find((l) => l.message === 'listening')!;
  assert.match(String(listening.try), new RegExp(`^openssl s_client -connect 127\\.0\\.0\\.1:${first.port} -CAfile .*ca\\.pem -verify_return_error -quiet$`));
  assert.match(String(listening.caFingerprint256), /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  assert.ok(!JSON.stringify(first.lines).includes('PRIVATE KEY'), 'key material is never logged');

  const check = await runCli(['check', `127.0.0.1:${first.port}`, '--ca', path.join(dir, 'ca.pem'), '--json']);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  const result = JSON.parse(check.stdout) as { ok: boolean; peer: { fingerprint256: string } };
  assert.equal(result.ok, true);
  assert.equal(result.peer.fingerprint256, listening.leafFingerprint256);

  const show = await runCli(['cert', 'show', '--cert-dir', dir, '--json']);
  assert.equal(show.code, 0, show.stderr);
  const shown = JSON.parse(show.stdout) as { leaf: { fingerprint256: string; spkiPin: string }; ca: { fingerprint256: string } };
  assert.equal(shown.leaf.fingerprint256, listening.leafFingerprint256);
  assert.equal(shown.ca.fingerprint256, listening.caFingerprint256);
  assert.match(shown.leaf.spkiPin, /^[A-Za-z0-9+/]{43}=$/);

  assert.equal(await first.stop('SIGINT'), 0);
  const second = await spawnDaemon(t, ['--cert-dir', dir, '--workers', '0']);
  const again = second.lines.find((l) => l.message === 'listening')!;
  assert.equal(again.leafFingerprint256, listening.leafFingerprint256, 'restart reuses the leaf');
  assert.ok(!second.lines.some((l) => String(l.message).startsWith('generated')), 'nothing regenerated');
  assert.equal(await second.stop('SIGTERM'), 0);
});

test('cli: cert show in text form names subject, SANs, expiry, fingerprints and the SPKI pin', async (t) => {
  const dir = tempDir(t);
  const gen = await runCli(['cert', 'generate', '--cert-dir', dir, '--san', 'echo.example']);
  assert.equal(gen.code, 0, gen.stderr);
  const show = await runCli(['cert', 'show', '--cert-dir', dir]);
  assert.equal(show.code, 0, show.stderr);
  for (const field of ['subject:', 'sans:', 'not after:', 'sha256:', 'spki pin:     sha256//', 'echo.example', 'IP Address:127.0.0.1', 'ca:']) {
    assert.ok(show.stdout.includes(field) || show.stdout.includes(field.replace('IP Address:', '')), `missing ${field} in\n${show.stdout}`);
  }
});

test('cli: check against a closed port fails with exit 1 and says why', async () => {
  const r = await runCli(['check', '127.0.0.1:1', '--insecure', '--timeout', '2000']);
  assert.equal(r.code, 1);
  assert.match(r.stdout + r.stderr, /refused|ECONNREFUSED/i);
});

test('cli: --help lists every serve option with its env var', async () => {
  const r = await runCli(['serve', '--help']);
  assert.equal(r.code, 0);
  for (const flag of ['--listen', '--cert-dir', '--key-type', '--min-tls', '--workers', '--max-pending', '--conn-rate', '--allow', '--deny', '--admin', '--drain-timeout']) {
    assert.ok(r.stdout.includes(flag), `${flag} missing from --help`);
  }
  assert.match(r.stdout, /TLS_ECHOD_LISTEN/);
});

test('cli: every launcher runs the daemon with no node flags, and the built bin runs as it is', () => {
  const root = path.join(__dirname, '..', '..');
  const shebang = readFileSync(path.join(root, 'src', 'cli.ts'), 'utf8').split('\n', 1)[0]!;
  assert.equal(shebang, '#!/usr/bin/env node');
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  assert.ok(pkg.scripts.start!.endsWith('&& node dist/src/cli.js serve'), `npm start: ${pkg.scripts.start}`);
  assert.ok(readFileSync(path.join(root, 'scripts', 'install.sh'), 'utf8').includes(`exec '$node' '$lib_dir/dist/src/cli.js'`), 'install.sh wrapper');
  // npm run build leaves the bin executable: it runs through its shebang from a checkout, on the
  // node running this suite (env takes the first on PATH), as every other test runs the daemon.
  const built = path.join(root, 'dist', 'src', 'cli.js');
  assert.equal(readFileSync(built, 'utf8').split('\n', 1)[0], shebang);
  assert.ok((statSync(built).mode & 0o111) !== 0, 'dist/src/cli.js is not executable');
  const env = { ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}` };
  assert.match(execFileSync(built, ['--version'], { encoding: 'utf8', env }), /\d+\.\d+\.\d+/);
});
