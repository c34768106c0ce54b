// `npm run fuzz -- --minutes N`: the property tests of test/properties/ for as long as asked.
// `npm test` runs each property for a fixed number of cases; here they run in rounds, each
// property for up to --seconds per round with a fresh random seed, until the time is up or one
// fails. A failure prints fast-check's seed, path and shrunk counterexample, and the command
// that replays exactly that case; the run stops there and exits 1.
//
//   npm run fuzz -- --minutes 60 [--seconds 30] [--only proxy,cidr]

import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const USAGE = 'usage: npm run fuzz -- [--minutes N] [--seconds S] [--only name,name]';

interface Settings {
  readonly minutes: number;
  readonly seconds: number;
  readonly only: readonly string[];
}

function fail(message: string): never {
  process.stderr.write(`fuzz: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function positive(flag: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) fail(`--${flag} ${raw}: expected a positive number`);
  return value;
}

function parseSettings(argv: string[]): Settings {
  let values: { minutes?: string; seconds?: string; only?: string };
  try {
    ({ values } = parseArgs({ args: argv, options: { minutes: { type: 'string' }, seconds: { type: 'string' }, only: { type: 'string' } } }));
  } catch (err) {
    fail((err as Error).message);
  }
  return {
    minutes: positive('minutes', values.minutes, 10),
    seconds: positive('seconds', values.seconds, 30),
    only: values.only === undefined ? [] : values.only.split(',').map((s) => s.trim()).filter((s) => s !== ''),
  };
}

/** The compiled property test files, dist/test/properties/<name>.test.js, filtered by --only. */
function propertyFiles(only: readonly string[]): string[] {
  const dir = path.resolve(__dirname, '..', 'test', 'properties');
  const files = readdirSync(dir).filter((f) => f.endsWith('.test.js')).sort();
  const chosen = only.length === 0 ? files : files.filter((f) => only.some((name) => f.includes(name)));
  if (chosen.length === 0) fail(`no property file matches --only ${only.join(',')} (have: ${files.map((f) => f.replace(/\.test\.js$/, '')).join(', ')})`);
  return chosen.map((f) => path.join(dir, f));
}

function main(): void {
  const settings = parseSettings(process.argv.slice(2));
  const files = propertyFiles(settings.only);
  const deadline = Date.now() + settings.minutes * 60_000;
  let round = 0;
  while (Date.now() < deadline) {
    round += 1;
    const left = (deadline - Date.now()) / 1000;
    // A round that would overrun the deadline by much gets shorter properties (at least 2 s).
    const seconds = Math.max(2, Math.min(settings.seconds, left / (files.length * 4)));
    process.stdout.write(`fuzz: round ${round}, ${files.length} files, up to ${seconds.toFixed(0)} s per property\n`);
    const started = Date.now();
    const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=dot', ...files], {
      env: { ...process.env, TLS_ECHOD_FUZZ_SECONDS: String(seconds) },
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    if (r.status !== 0) {
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      process.stderr.write(`fuzz: round ${round} failed; the seed and replay command are above\n`);
      process.exit(1);
    }
    process.stdout.write(`fuzz: round ${round} passed in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  }
  process.stdout.write(`fuzz: ${round} rounds, no failure in ${settings.minutes} min\n`);
}

main();
