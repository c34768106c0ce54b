// Configuration: precedence flag > env > file > default, every problem listed at once with
// exit code 2, and clear failures for a taken port or an unreadable certificate.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { test } from 'node:test';
import { autoWorkers, loadConfig, type ConfigSources } from '../../src/config/config';
import { ConfigError } from '../../src/errors';
import { runCli, tempDir } from '../helpers/daemon';

test('config: defaults match the documented table', () => {
  const c = loadConfig({ flags: {}, env: {} });
  assert.deepEqual(c.listen, { host: '127.0.0.1', port: 4433 });
  assert.equal(c.certDir, './certs');
  assert.equal(c.keyType, 'ecdsa-p256');
  assert.equal(c.certDays, 90);
  assert.equal(c.minTls, 'TLSv1.2');
  assert.equal(c.handshakeTimeoutMs, 10000);
  assert.equal(c.maxSessions, 10000);
  assert.equal(c.maxPending, 1000);
  assert.equal(c.pendingTimeoutMs, 5000);
  assert.equal(c.idleTimeoutMs, 60000);
  assert.equal(c.sessionTimeoutMs, 0);
  assert.equal(c.connRatePerSec, 100);
  assert.equal(c.connBurst, 200);
  assert.equal(c.maxConnsPerIp, 512);
  assert.equal(c.drainTimeoutMs, 10000);
  assert.equal(c.admin, undefined);
  assert.ok(Object.isFrozen(c));
});

test('config: flag beats env beats file beats default', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ listen: '127.0.0.1:1111', certDays: 30, idleTimeout: 5, maxPending: 7 }));
  const c = loadConfig({
    flags: { listen: '[::1]:3333' },
    env: { TLS_ECHOD_LISTEN: '127.0.0.1:2222', TLS_ECHOD_CERT_DAYS: '45' },
    configFile: file,
  });
  assert.deepEqual(c.listen, { host: '::1', port: 3333 });
  assert.equal(c.certDays, 45);
  assert.equal(c.idleTimeoutMs, 5);
  assert.equal(c.maxPending, 7);
  assert.equal(c.maxSessions, 10000);
});

test('config: every problem is listed at once', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ listn: 'x', certDays: -1 }));
  assert.throws(
    () => loadConfig({ flags: { listen: 'nonsense', keyType: 'dsa' }, env: { TLS_ECHOD_WORKERS: 'many', TLS_ECHOD_BOGUS: '1' }, configFile: file }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.code, 'ECHOD_CONFIG_INVALID');
      assert.equal(err.exitCode, 2);
      const text = err.problems.join('\n');
      for (const expected of ['unknown key "listn" (did you mean listen?)', '--listen', '--key-type', 'TLS_ECHOD_WORKERS', 'TLS_ECHOD_BOGUS', 'certDays']) {
        assert.ok(text.includes(expected), `missing ${expected} in:\n${text}`);
      }
      assert.equal(err.problems.length, 6);
      return true;
    },
  );
});

test('config: --cert without --key, and a bad CIDR, are explained', () => {
  assert.throws(() => loadConfig({ flags: { cert: '/x.pem', allow: ['10.0.0.0/33'] }, env: {} }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /--cert and --key go together/);
    assert.match(err.message, /10\.0\.0\.0\/33/);
    return true;
  });
});

test('cli: a bad flag value exits 2 with one message naming each problem', async () => {
  const r = await runCli(['serve', '--listen', 'nope', '--workers', '-3', '--min-tls', '1.1']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--listen: must be host:port/);
  assert.match(r.stderr, /--workers/);
  assert.match(r.stderr, /--min-tls: must be one of 1\.2, 1\.3/);
});

test('cli: an unknown flag exits 2', async () => {
  const r = await runCli(['serve', '--no-such-flag']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown option '--no-such-flag'/);
});

test('cli: a port in use is a clear error and a non-zero exit', async (t) => {
  const blocker = net.createServer().listen(0, '127.0.0.1');
  t.after(() => blocker.close());
  await once(blocker, 'listening');
  const port = (blocker.address() as net.AddressInfo).port;
  const r = await runCli(['serve', '--listen', `127.0.0.1:${port}`, '--cert-dir', tempDir(t), '--workers', '0']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`--listen 127\\.0\\.0\\.1:${port}: address in use`));
});

test('cli: an unreadable certificate is a clear error and a non-zero exit', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['serve', '--listen', '127.0.0.1:0', '--cert', path.join(dir, 'missing.pem'), '--key', path.join(dir, 'missing-key.pem')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /missing\.pem/);
  assert.match(r.stderr, /--cert/);
});

test('config: --workers auto is one worker per CPU, and inline (0) on a single CPU', () => {
  assert.equal(autoWorkers(1), 0);
  assert.equal(autoWorkers(2), 2);
  assert.equal(autoWorkers(16), 16);
});

test('config: --proxy-protocol is a switch (flag, env, file) and needs --trusted-proxy; --trusted-proxy needs it', (t) => {
  assert.equal(loadConfig({ flags: {}, env: {} }).proxyProtocol, false);
  assert.deepEqual(loadConfig({ flags: {}, env: {} }).trustedProxy, []);
  const on = loadConfig({ flags: { proxyProtocol: true, trustedProxy: ['127.0.0.1/32', '10.0.0.0/8'] }, env: {} });
  assert.equal(on.proxyProtocol, true);
  assert.deepEqual(on.trustedProxy.map((c) => c.text), ['127.0.0.1/32', '10.0.0.0/8']);
  for (const [value, expected] of [['true', true], ['1', true], ['false', false], ['0', false]] as const) {
    const c = loadConfig({ flags: {}, env: { TLS_ECHOD_PROXY_PROTOCOL: value, TLS_ECHOD_TRUSTED_PROXY: expected ? '127.0.0.1,::1' : '' } });
    assert.equal(c.proxyProtocol, expected, value);
  }
  const file = path.join(tempDir(t), 'c.json');
  writeFileSync(file, JSON.stringify({ proxyProtocol: true, trustedProxy: ['192.0.2.0/24'] }));
  assert.equal(loadConfig({ flags: {}, env: {}, configFile: file }).proxyProtocol, true);

  const problems = (flags: ConfigSources['flags'], env: NodeJS.ProcessEnv = {}): readonly string[] => {
    try {
      loadConfig({ flags, env });
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems;
    }
    return [];
  };
  assert.match(problems({ proxyProtocol: true }).join('\n'), /--proxy-protocol needs --trusted-proxy/);
  assert.match(problems({ trustedProxy: ['127.0.0.1'] }).join('\n'), /--trusted-proxy is only used with --proxy-protocol/);
  assert.match(problems({}, { TLS_ECHOD_PROXY_PROTOCOL: 'yes' }).join('\n'), /TLS_ECHOD_PROXY_PROTOCOL: must be true or false/);
  assert.match(problems({ proxyProtocol: true, trustedProxy: ['not-a-cidr'] }).join('\n'), /"not-a-cidr" is not an IPv4 or IPv6 address/);
});

test('cli: --proxy-protocol without --trusted-proxy exits 2 naming --trusted-proxy', async () => {
  const { code, stderr } = await runCli(['serve', '--proxy-protocol']);
  assert.equal(code, 2);
  assert.match(stderr, /--trusted-proxy/);
});

test('config: --redis URLs, the switch --redis-required and the password from the env', () => {
  const c = loadConfig({ flags: { redis: 'redis://127.0.0.1:6390/1', redisRequired: true }, env: { TLS_ECHOD_REDIS_PASSWORD: 's3cret', TLS_ECHOD_REDIS_TIMEOUT: '75' } });
  assert.equal(c.redis, 'redis://127.0.0.1:6390/1');
  assert.equal(c.redisRequired, true);
  assert.equal(c.redisTimeoutMs, 75);
  assert.equal(c.redisPrefix, 'tls-echod:');
  assert.equal(c.redisPassword, 's3cret', 'TLS_ECHOD_REDIS_PASSWORD is read, and is no unknown option');
  for (const [raw, want] of [['true', true], ['1', true], ['false', false], ['0', false]] as const) {
    assert.equal(loadConfig({ flags: { redis: 'unix:///tmp/r.sock' }, env: { TLS_ECHOD_REDIS_REQUIRED: raw } }).redisRequired, want, raw);
  }
  assert.equal(loadConfig({ flags: {}, env: {} }).redisRequired, false);
  assert.throws(
    () => loadConfig({ flags: { redis: 'http://user:topsecret@h' }, env: { TLS_ECHOD_REDIS_REQUIRED: 'yes' } }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /--redis: must start with redis:\/\/, rediss:\/\/ or unix:\/\//);
      assert.match(err.message, /TLS_ECHOD_REDIS_REQUIRED: must be true or false/);
      assert.ok(!err.message.includes('topsecret'), 'the password is never repeated');
      return true;
    },
  );
  assert.throws(() => loadConfig({ flags: { redis: 'unix://' }, env: {} }), /unix:\/\/ needs the socket path/);
});

test('cli: --redis-required without --redis exits 2', async () => {
  const r = await runCli(['serve', '--redis-required']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--redis-required needs --redis/);
});
