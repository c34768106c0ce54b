// Properties of the config loader against hostile operator input: any JSON under any key of the
// --config file, any value in any TLS_ECHOD_* variable, any flag value. Loading gives a Config the
// daemon can run on, or a ConfigError listing readable problems; never another exception, never a
// polluted prototype. Through the real CLI: exit 2 and one message, no stack trace. The examples
// after the properties are the counterexamples they found, kept as regression tests.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { autoWorkers, CONFIG_FILE_MAX_BYTES, envName, jsonKey, loadConfig, OPTIONS, type Config, type ConfigSources } from '../../src/config/config';
import { ConfigError } from '../../src/errors';
import { runCli, tempDir } from '../helpers/daemon';
import { checkProperty } from './budget';

const KNOWN_KEYS = OPTIONS.map((o) => jsonKey(o.flag));
const KNOWN_ENV = OPTIONS.map((o) => envName(o.flag));
const PROTOTYPE_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty'];

/** Longest problem line a person should have to read: a value is quoted in part, never whole. */
const MAX_PROBLEM_CHARS = 1000;

/** Node timers take a signed 32-bit count of ms; a longer one fires every 1 ms instead. */
const MAX_TIMER_MS = 2_147_483_647;

/** The documented range of every numeric field (docs/configuration.md), as the daemon relies on it. */
const RANGES: Readonly<Partial<Record<keyof Config, readonly [number, number]>>> = {
  certDays: [1, 3650],
  handshakeTimeoutMs: [1, 3_600_000],
  workers: [0, 256],
  maxSessions: [1, 10_000_000],
  maxPending: [0, 10_000_000],
  pendingTimeoutMs: [1, 3_600_000],
  idleTimeoutMs: [0, MAX_TIMER_MS],
  sessionTimeoutMs: [0, MAX_TIMER_MS],
  connRatePerSec: [1, 1_000_000_000],
  connBurst: [1, 1_000_000_000],
  maxConnsPerIp: [1, 10_000_000],
  bandwidthBytesPerSec: [0, Number.MAX_SAFE_INTEGER],
  maxSessionBytes: [0, Number.MAX_SAFE_INTEGER],
  ticketRotationSec: [1, Math.floor(MAX_TIMER_MS / 1000)],
  drainTimeoutMs: [0, 3_600_000],
  renewCheckSec: [1, 86_400],
  scenarioDelayMs: [0, 600_000],
  ipv6Prefix: [1, 128],
  redisTimeoutMs: [1, 10_000],
};

/** Strings an operator might plausibly write (so that valid configs come up often) and some they might not. */
const plausibleText = fc.oneof(
  fc.constantFrom(
    'auto', '1.2', '1.3', 'off', 'request', 'require', 'debug', 'info', 'json', 'text', 'true', 'false', '1', '0',
    'ecdsa-p256', 'rsa-3072', '127.0.0.1:0', '[::1]:443', ':0', '127.0.0.1:65536', '10.0.0.0/8', '::1/128', '10.0.0.0/33',
    'localhost', 'tls.test', 'redis://127.0.0.1:6379', 'unix:///run/redis.sock', '/etc/x.pem',
    // Numbers as env strings that Number() would take but a whole-number field must not.
    'NaN', 'Infinity', '-0', '1e3', '0x10', '1e309', ' 12 ', '\t', ' ', '٣', '12abc', '-1', '4294967296',
  ),
  fc.integer({ min: 0, max: 3_000_000_000 }).map(String),
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
);

/** JSON text of a value for the file: plausible, arbitrary, and the hostile shapes. */
const jsonValueText = fc.oneof(
  { weight: 4, arbitrary: plausibleText.map((s) => JSON.stringify(s)) },
  { weight: 2, arbitrary: fc.integer({ min: -1, max: 3_000_000_000 }).map(String) },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.constantFrom('1e309', '-1e309', '-0', '1e-400', '0.5', '1.0', '5e2', 'true', 'null', '[]', '{}') },
  { weight: 1, arbitrary: fc.array(plausibleText, { maxLength: 4 }).map((a) => JSON.stringify(a)) },
  { weight: 1, arbitrary: fc.constantFrom(...PROTOTYPE_KEYS).map((k) => `{${JSON.stringify(k)}: 1}`) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 20_000 }).map((n) => '['.repeat(n) + ']'.repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 20_000 }).map((n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 1_000_000 }).map((n) => JSON.stringify('a'.repeat(n))) },
);

/** A config file's whole text: mostly an object of entries, sometimes something else entirely. */
const configFileText = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .array(fc.tuple(fc.oneof(fc.constantFrom(...KNOWN_KEYS), fc.constantFrom(...PROTOTYPE_KEYS), fc.string({ maxLength: 12 })), jsonValueText), { maxLength: 5 })
      .map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.constantFrom('', '\ufeff{}', '{', 'null', '"x"', '42', '[{}]', ' \n ') },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 20_000 }).map((n) => '['.repeat(n) + ']'.repeat(n)) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
);

const envArbitrary = fc
  .array(fc.tuple(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...KNOWN_ENV, 'TLS_ECHOD_REDIS_PASSWORD') }, { weight: 1, arbitrary: fc.constantFrom('TLS_ECHOD_', 'TLS_ECHOD_LISTN', `TLS_ECHOD_${'X'.repeat(5000)}`) }), plausibleText), { maxLength: 4 })
  .map((entries) => Object.fromEntries(entries) as NodeJS.ProcessEnv);

/** Flags as commander hands them over: strings, a list for a repeated flag, true for a bare switch. */
const flagsArbitrary = fc
  .array(fc.tuple(fc.constantFrom(...KNOWN_KEYS), fc.oneof(plausibleText, fc.array(plausibleText, { minLength: 1, maxLength: 3 }), fc.constant(true))), { maxLength: 3 })
  .map((entries) => Object.fromEntries(entries) as ConfigSources['flags']);

/** Every invariant the daemon relies on in a Config that loaded; a message for the first broken one. */
function brokenInvariant(c: Config): string | undefined {
  if (!Object.isFrozen(c)) return 'not frozen';
  for (const field of ['listen', 'admin', 'scenarios'] as const) {
    const hp = c[field];
    if (hp === undefined) continue;
    if (typeof hp.host !== 'string' || hp.host === '') return `${field}: empty host`;
    if (!Number.isInteger(hp.port) || hp.port < 0 || hp.port > 65535) return `${field}: port ${hp.port}`;
  }
  for (const [field, [min, max]] of Object.entries(RANGES) as [keyof Config, readonly [number, number]][]) {
    const n = c[field];
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || Object.is(n, -0) || n < min || n > max) return `${field}: ${String(n)} not in ${min}..${max}`;
  }
  for (const field of Object.keys(c) as (keyof Config)[]) {
    const n = c[field];
    const ms = field.endsWith('Ms') ? n : field.endsWith('Sec') && field !== 'connRatePerSec' && field !== 'bandwidthBytesPerSec' ? (n as number) * 1000 : undefined;
    if (typeof ms === 'number' && ms > MAX_TIMER_MS) return `${field}: ${ms} ms does not fit a Node timer`;
  }
  if (!['TLSv1.2', 'TLSv1.3'].includes(c.minTls)) return `minTls ${c.minTls}`;
  if (!['off', 'request', 'require'].includes(c.clientAuth)) return `clientAuth ${c.clientAuth}`;
  if (!['error', 'warn', 'info', 'debug'].includes(c.logLevel)) return `logLevel ${c.logLevel}`;
  if (!['json', 'text'].includes(c.logFormat)) return `logFormat ${c.logFormat}`;
  if (!['ecdsa-p256', 'rsa-2048', 'rsa-3072'].includes(c.keyType)) return `keyType ${c.keyType}`;
  if (typeof c.proxyProtocol !== 'boolean' || typeof c.redisRequired !== 'boolean') return 'a switch is not a boolean';
  for (const list of [c.sans, c.allow, c.deny, c.trustedProxy]) if (!Array.isArray(list)) return 'a list is not an array';
  if ((c.certFile === undefined) !== (c.keyFile === undefined)) return '--cert without --key';
  if (c.chainFile !== undefined && c.certFile === undefined) return '--chain without --cert';
  if (c.proxyProtocol && c.trustedProxy.length === 0) return '--proxy-protocol without --trusted-proxy';
  if (c.redisRequired && c.redis === undefined) return '--redis-required without --redis';
  return undefined;
}

/** Loads and judges one case: undefined when it is fine, else why not. */
function judge(sources: ConfigSources): string | undefined {
  let config: Config;
  try {
    config = loadConfig(sources);
  } catch (err) {
    if (!(err instanceof ConfigError)) return `threw ${(err as Error).stack ?? String(err)}`;
    if (err.exitCode !== 2 || err.problems.length === 0) return 'ConfigError without problems or exit 2';
    const long = err.problems.find((p) => p.length > MAX_PROBLEM_CHARS);
    return long === undefined ? undefined : `a problem of ${long.length} characters: ${long.slice(0, 200)}...`;
  }
  return brokenInvariant(config);
}

function assertPrototypesClean(): void {
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(Object.prototype.toString.call([]), '[object Array]');
}

test('property: any config file, env and flags load to a valid Config or a ConfigError, nothing else', async (t) => {
  const file = path.join(tempDir(t), 'config.json');
  await checkProperty(
    fc.property(configFileText, envArbitrary, flagsArbitrary, (text, env, flags) => {
      writeFileSync(file, text);
      const why = judge({ flags, env, configFile: file });
      assertPrototypesClean();
      assert.equal(why, undefined, why);
    }),
    { runs: 400 },
  );
});

test('property: any env value of any known variable, alone, gives a valid Config or a ConfigError', async () => {
  await checkProperty(
    fc.property(fc.constantFrom(...KNOWN_ENV), fc.oneof(plausibleText, fc.string({ unit: 'grapheme', maxLength: 30 })), (name, value) => {
      const why = judge({ flags: {}, env: { [name]: value } });
      assert.equal(why, undefined, why);
    }),
    { runs: 1000 },
  );
});

/** The options a rule between options reads (crossCheck in config.ts), and values for them, good and bad. */
const CROSS_CHECKED: Readonly<Record<string, readonly string[]>> = {
  TLS_ECHOD_LISTEN: ['127.0.0.1:5000', '127.0.0.1:0', 'nonsense'],
  TLS_ECHOD_SCENARIOS: ['127.0.0.1:5000', '127.0.0.1:0', 'nonsense'],
  TLS_ECHOD_CERT: ['/etc/x.pem', 'x'],
  TLS_ECHOD_KEY: ['/etc/x-key.pem'],
  TLS_ECHOD_CHAIN: ['/etc/chain.pem'],
  TLS_ECHOD_CLIENT_AUTH: ['off', 'require', 'sometimes'],
  TLS_ECHOD_CLIENT_CA: ['/etc/ca.pem'],
  TLS_ECHOD_PROXY_PROTOCOL: ['true', 'false', 'maybe'],
  TLS_ECHOD_TRUSTED_PROXY: ['10.0.0.0/8', '10.0.0.0/33'],
  TLS_ECHOD_REDIS: ['redis://127.0.0.1:6379', 'http://x'],
  TLS_ECHOD_REDIS_REQUIRED: ['true', 'false', 'maybe'],
};

test('property: options that depend on each other, good or bad in any mix, give a valid Config or a ConfigError', async () => {
  const entry = fc.constantFrom(...Object.keys(CROSS_CHECKED)).chain((name) => fc.tuple(fc.constant(name), fc.constantFrom(...CROSS_CHECKED[name]!)));
  await checkProperty(
    fc.property(fc.array(entry, { maxLength: 6 }), (entries) => {
      const why = judge({ flags: {}, env: Object.fromEntries(entries) });
      assert.equal(why, undefined, why);
    }),
    { runs: 1000 },
  );
});

/** Hostile values that no option accepts, so a config holding one never starts a daemon. */
const alwaysInvalidText = fc.oneof(
  fc.constantFrom('{"toString": 1}', '{"__proto__": {"polluted": 1}}', '1e309', '-0.5', '[[{}]]'),
  fc.integer({ min: 2, max: 20_000 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
);

test('property: through the CLI, a bad config file exits 2 with one message, no stack trace', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'config.json');
  await checkProperty(
    fc.asyncProperty(fc.constantFrom(...KNOWN_KEYS), alwaysInvalidText, async (key, value) => {
      // No flags: a flag would win over the key under test. Should the file pass, the daemon
      // serves on a free port from `dir` until the timeout ends it, and the exit code fails.
      const safe = Object.entries({ listen: '127.0.0.1:0', certDir: dir }).filter(([k]) => k !== key);
      writeFileSync(file, `{${[`${JSON.stringify(key)}: ${value}`, ...safe.map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`)].join(', ')}}`);
      const r = await runCli(['serve', '--config', file], {}, CLI_TIMEOUT_MS);
      assertOneUsageMessage(r, /^tls-echod: invalid configuration: --config key "[A-Za-z0-9]+": .+\n$/);
    }),
    { runs: 3 },
  );
});

/** Command lines commander refuses: an unknown flag, a missing value, an extra argument. */
const badArgv = fc.oneof(
  fc.stringMatching(/^[a-z][a-z-]{0,15}$/).filter((f) => !OPTIONS.some((o) => o.flag === f) && f !== 'config' && f !== 'help').map((f) => [`--${f}`]),
  fc.constantFrom(...OPTIONS.filter((o) => o.arg !== '').map((o) => o.flag)).map((f) => [`--${f}`]),
  fc.string({ minLength: 1, maxLength: 10 }).filter((s) => !s.startsWith('-')).map((s) => [s]),
);

test('property: through the CLI, a bad command line exits 2 with one message, no stack trace', async () => {
  await checkProperty(
    fc.asyncProperty(badArgv, async (argv) => {
      const r = await runCli(['serve', ...argv], {}, CLI_TIMEOUT_MS);
      assertOneUsageMessage(r, /^error: .+\n(?:\(Did you mean .+\)\n)?\(run with --help for usage\)\n$/);
    }),
    { runs: 3 },
  );
});

/** A usage error takes well under a second; a CLI that is still running by then is serving. */
const CLI_TIMEOUT_MS = 10_000;

function assertOneUsageMessage(r: { code: number | null; stdout: string; stderr: string }, shape: RegExp): void {
  assert.equal(r.code, 2, r.stderr);
  assert.doesNotMatch(r.stderr, /\n\s+at |unexpected error/, r.stderr);
  assert.match(r.stderr, shape);
}

// Counterexamples found, kept as examples.

test('config: {"logLevel": {"toString": 1}} is a ConfigError naming the key, not a TypeError', (t) => {
  const file = path.join(tempDir(t), 'config.json');
  writeFileSync(file, '{"logLevel": {"toString": 1}}');
  assert.throws(() => loadConfig({ flags: {}, env: {}, configFile: file }), (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.deepEqual(err.problems, ['--config key "logLevel": must be one of error, warn, info, debug, got {"toString":1}']);
    return true;
  });
});

test('config: 20,000 nested arrays under a key, or as the whole file, are a ConfigError, not a stack overflow', (t) => {
  const file = path.join(tempDir(t), 'config.json');
  const nested = '['.repeat(20_000) + ']'.repeat(20_000);
  for (const [text, expected] of [
    [`{"workers": ${nested}}`, /^--config key "workers": must be a whole number, got \[{60}\.\.\.$/],
    [`{"logLevel": ${nested}}`, /^--config key "logLevel": must be one of error, warn, info, debug, got \[{60}\.\.\.$/],
    [nested, /: must hold a JSON object of options$/],
  ] as const) {
    writeFileSync(file, text);
    assert.throws(() => loadConfig({ flags: {}, env: {}, configFile: file }), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.equal(err.problems.length, 1);
      assert.match(err.problems[0]!, expected);
      return true;
    });
  }
});

test('config: a 200 KB value or key is quoted in part, and an unknown one costs no edit-distance search', (t) => {
  const file = path.join(tempDir(t), 'config.json');
  const huge = 'a'.repeat(200_000);
  writeFileSync(file, JSON.stringify({ [huge]: 1, listen: huge, scenarioDomain: huge, san: [huge] }));
  assert.throws(() => loadConfig({ flags: {}, env: {}, configFile: file }), (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.problems.length, 4);
    for (const p of err.problems) assert.ok(p.length < 300, p.slice(0, 300));
    return true;
  });
});

test('config: a file past 1 MiB, or one that never ends (/dev/zero), is refused unread; a byte order mark is dropped', (t) => {
  const file = path.join(tempDir(t), 'config.json');
  writeFileSync(file, JSON.stringify({ san: ['a'.repeat(CONFIG_FILE_MAX_BYTES)] }));
  for (const configFile of [file, '/dev/zero']) {
    assert.throws(() => loadConfig({ flags: {}, env: {}, configFile }), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.deepEqual(err.problems, [`--config ${configFile}: larger than ${CONFIG_FILE_MAX_BYTES} bytes (give a readable JSON file, or leave --config out)`]);
      return true;
    });
  }
  writeFileSync(file, '\ufeff{"workers": 3}');
  assert.equal(loadConfig({ flags: {}, env: {}, configFile: file }).workers, 3);
});

test('config: a refused --listen beside --scenarios is one problem, not a TypeError; a refused --client-auth is not blamed as "undefined"', () => {
  for (const [env, expected] of [
    [{ TLS_ECHOD_LISTEN: 'nonsense', TLS_ECHOD_SCENARIOS: '127.0.0.1:5000' }, /^env TLS_ECHOD_LISTEN: must be host:port/],
    [{ TLS_ECHOD_CLIENT_AUTH: 'sometimes', TLS_ECHOD_CERT: '/x.pem', TLS_ECHOD_KEY: '/x-key.pem' }, /^env TLS_ECHOD_CLIENT_AUTH: must be one of off, request, require/],
  ] as const) {
    assert.throws(() => loadConfig({ flags: {}, env }), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.equal(err.problems.length, 1, err.message);
      assert.match(err.problems[0]!, expected);
      return true;
    });
  }
});

test('config: an unknown env var with a long name is named in part', () => {
  const name = `TLS_ECHOD_${'X'.repeat(5000)}`;
  assert.throws(() => loadConfig({ flags: {}, env: { [name]: '1' } }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.problems, [`env ${name.slice(0, 60)}...: unknown option`]);
    return true;
  });
});

test('config: --ticket-rotation stops at 2147483 s, the longest a Node timer can wait (30 days made it rotate every 1 ms)', () => {
  assert.equal(loadConfig({ flags: { ticketRotation: '2147483' }, env: {} }).ticketRotationSec, 2_147_483);
  assert.throws(() => loadConfig({ flags: { ticketRotation: String(30 * 86_400) }, env: {} }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.problems, ['--ticket-rotation: must be between 1 and 2147483 (s), got 2592000']);
    return true;
  });
});

test('config: __proto__, constructor and prototype keys are unknown keys and pollute nothing', (t) => {
  const file = path.join(tempDir(t), 'config.json');
  writeFileSync(file, '{"__proto__": {"polluted": 1, "workers": 3}, "constructor": {"prototype": {"polluted": 1}}, "prototype": 1}');
  assert.throws(() => loadConfig({ flags: {}, env: {}, configFile: file }), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.problems.map((p) => p.replace(`--config ${file}: `, '')), ['unknown key "__proto__"', 'unknown key "constructor"', 'unknown key "prototype"']);
    return true;
  });
  assertPrototypesClean();
});

test('config: enum values and workers auto take surrounding whitespace, like the numbers do', () => {
  const c = loadConfig({ flags: {}, env: { TLS_ECHOD_LOG_LEVEL: ' debug ', TLS_ECHOD_WORKERS: ' auto\n', TLS_ECHOD_MIN_TLS: '1.3 ', TLS_ECHOD_CERT_DAYS: ' 7 ' } });
  assert.equal(c.logLevel, 'debug');
  assert.equal(c.workers, autoWorkers());
  assert.equal(c.minTls, 'TLSv1.3');
  assert.equal(c.certDays, 7);
});
