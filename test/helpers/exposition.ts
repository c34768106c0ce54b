// A small, strict parser for the Prometheus text exposition format (version 0.0.4): it fails the
// test on the first line the format does not allow, so every scrape a test reads is also checked.
// For one sample out of a daemon's scrape without the checks, helpers/metrics.ts has sample().

import assert from 'node:assert/strict';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  type: string | undefined;
  help: string | undefined;
  readonly samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(text: string, where: string): number {
  if (text === 'NaN') return NaN;
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  assert.match(text, FLOAT, `${where}: bad value ${JSON.stringify(text)}`);
  return Number(text);
}

function unescape(text: string, where: string, quoteAllowed: boolean): string {
  return text.replace(/\\(.?)/g, (_, c: string) => {
    if (c === '\\') return '\\';
    if (c === 'n') return '\n';
    if (c === '"' && quoteAllowed) return '"';
    assert.fail(`${where}: bad escape \\${c}`);
  });
}

/** Reads `{a="x",b="y"}` starting at `start`; returns the labels and the index after `}`. */
function parseLabels(line: string, start: number, where: string): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  let i = start + 1;
  if (line[i] === '}') return [labels, i + 1];
  for (;;) {
    const eq = line.indexOf('=', i);
    assert.ok(eq > i, `${where}: label without =`);
    const name = line.slice(i, eq);
    assert.match(name, LABEL_NAME, `${where}: bad label name`);
    assert.ok(!(name in labels), `${where}: label ${name} twice`);
    assert.equal(line[eq + 1], '"', `${where}: label value not quoted`);
    let j = eq + 2;
    let raw = '';
    while (line[j] !== '"') {
      assert.ok(j < line.length, `${where}: unterminated label value`);
      if (line[j] === '\\') raw += line[j++];
      raw += line[j++];
    }
    labels[name] = unescape(raw, where, true);
    i = j + 1;
    if (line[i] === '}') return [labels, i + 1];
    assert.equal(line[i], ',', `${where}: expected , or } after a label`);
    i++;
  }
}

/** Parses the whole text or fails the test on the first line that isn't valid. */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seriesSeen = new Set<string>();
  let current: Family | undefined;
  assert.ok(text.endsWith('\n'), 'exposition must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) {
      f = { name, type: undefined, help: undefined, samples: [] };
      families.set(name, f);
    }
    return f;
  };

  lines.forEach((line, index) => {
    const where = `line ${index + 1} ${JSON.stringify(line)}`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      assert.ok(m, `${where}: only # HELP and # TYPE comments are expected`);
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      assert.match(name, METRIC_NAME, `${where}: bad metric name`);
      const f = family(name);
      if (kind === 'HELP') {
        assert.equal(f.help, undefined, `${where}: second HELP`);
        f.help = unescape(rest, where, false);
      } else {
        assert.ok(TYPES.has(rest), `${where}: bad type`);
        assert.equal(f.type, undefined, `${where}: second TYPE`);
        assert.equal(f.samples.length, 0, `${where}: TYPE after samples`);
        f.type = rest;
      }
      current = f;
      return;
    }

    const nameEnd = line.search(/[{ ]/);
    assert.ok(nameEnd > 0, `${where}: no metric name`);
    const name = line.slice(0, nameEnd);
    assert.match(name, METRIC_NAME, `${where}: bad metric name`);
    let labels: Record<string, string> = {};
    let i = nameEnd;
    if (line[i] === '{') [labels, i] = parseLabels(line, i, where);
    assert.equal(line[i], ' ', `${where}: expected one space before the value`);
    const parts = line.slice(i + 1).split(' ');
    assert.ok(parts.length === 1 || (parts.length === 2 && /^-?\d+$/.test(parts[1] ?? '')), `${where}: bad value/timestamp`);
    const value = parseValue(parts[0] ?? '', where);

    // A sample belongs to the family declared just above it (contiguous, as the format wants).
    assert.ok(current !== undefined, `${where}: sample before any TYPE`);
    const suffixes = current.type === 'histogram' ? ['_bucket', '_sum', '_count'] : current.type === 'summary' ? ['', '_sum', '_count'] : [''];
    assert.ok(suffixes.some((s) => name === current?.name + s), `${where}: sample is not of family ${current.name}`);
    if (name.endsWith('_bucket') && current.type === 'histogram') assert.ok('le' in labels, `${where}: bucket without le`);
    const key = name + labelKey(labels);
    assert.ok(!seriesSeen.has(key), `${where}: duplicate series`);
    seriesSeen.add(key);
    current.samples.push({ name, labels, value });
  });

  for (const f of families.values()) {
    assert.ok(f.type !== undefined, `${f.name}: no TYPE`);
    assert.ok(f.help !== undefined, `${f.name}: no HELP`);
    if (f.type === 'histogram') checkHistogram(f);
  }
  return families;
}

/** Buckets ascend, end at +Inf, are cumulative; _count equals the +Inf bucket; _sum is there. */
function checkHistogram(f: Family): void {
  const groups = new Map<string, Sample[]>();
  for (const s of f.samples) {
    const key = labelKey(s.labels, 'le');
    if (s.name === `${f.name}_bucket`) groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  for (const [key, buckets] of groups) {
    const bounds = buckets.map((b) => parseValue(b.labels.le ?? '', `${f.name} le`));
    assert.equal(bounds.at(-1), Infinity, `${f.name}${key}: last bucket must be +Inf`);
    for (let i = 1; i < buckets.length; i++) {
      assert.ok((bounds[i] ?? 0) > (bounds[i - 1] ?? 0), `${f.name}${key}: le must ascend`);
      assert.ok((buckets[i]?.value ?? 0) >= (buckets[i - 1]?.value ?? 0), `${f.name}${key}: buckets must be cumulative`);
    }
    const sameLabels = (s: Sample): boolean => labelKey(s.labels, 'le') === key;
    const count = f.samples.find((s) => s.name === `${f.name}_count` && sameLabels(s));
    const sum = f.samples.find((s) => s.name === `${f.name}_sum` && sameLabels(s));
    assert.ok(count !== undefined && sum !== undefined, `${f.name}${key}: _count and _sum required`);
    assert.equal(count.value, buckets.at(-1)?.value, `${f.name}${key}: _count must equal the +Inf bucket`);
  }
}

/** A canonical string for a label set, leaving out `without`. */
function labelKey(labels: Readonly<Record<string, string>>, without?: string): string {
  return JSON.stringify(Object.entries(labels).filter(([k]) => k !== without).sort());
}

/** The value of one series, or undefined if it isn't there. Labels must match exactly. */
export function valueOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const base = name.replace(/_(bucket|sum|count)$/, '');
  const f = families.get(name) ?? families.get(base);
  const want = labelKey(labels);
  return f?.samples.find((s) => s.name === name && labelKey(s.labels) === want)?.value;
}
