// The machine the benchmark runs on: CPU model and count, pinning of servers and generator to
// different cores, the fd limit the idle test needs, the commit measured; and the /proc readers
// that CPU and memory figures are taken from.

import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FD_HEADROOM, type Settings } from './settings';

// ---------------------------------------------------------------------------------------------
// The machine: CPUs, pinning, fd limits

export interface Machine {
  readonly cpuModel: string;
  readonly cpus: number;
  readonly allowedCpus: readonly number[];
  readonly node: string;
  readonly kernel: string;
  readonly date: string;
  readonly loadAvgAtStart: readonly number[];
  readonly clockTicksPerSec: number;
  /** CPUs the servers run on and the CPUs of the generator; undefined when not pinned. */
  readonly pinning: { readonly server: readonly number[]; readonly load: readonly number[] } | undefined;
  readonly pinNote: string;
  readonly fdLimit: number;
  /** The tls-echod commit measured (with "+changes" when the tree differs from it). */
  readonly commit: string;
}

function parseCpuList(text: string): number[] {
  const out: number[] = [];
  for (const part of text.trim().split(',')) {
    const [a, b] = part.split('-').map((s) => Number(s));
    if (a === undefined || !Number.isInteger(a)) continue;
    const end = b !== undefined && Number.isInteger(b) ? b : a;
    for (let i = a; i <= end; i++) out.push(i);
  }
  return out;
}

export function readFileOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

/** The hard RLIMIT_NOFILE of `pid` (Node raises its own soft limit to the hard one at startup). */
function fdHardLimit(pid: number | 'self'): number {
  const line = readFileOr(`/proc/${pid}/limits`, '').split('\n').find((l) => l.startsWith('Max open files'));
  const hard = line?.trim().split(/\s+/)[4];
  return hard === 'unlimited' ? Infinity : Number(hard ?? NaN);
}

function gitCommit(): string {
  // The repository root, from dist/scripts/bench/.
  const cwd = path.join(__dirname, '..', '..', '..');
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8' });
  if (head.status !== 0) return 'unknown';
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=no', 'src', 'scripts'], { cwd, encoding: 'utf8' });
  return head.stdout.trim() + (dirty.stdout?.trim() ? '+changes' : '');
}

export function inspectMachine(settings: Settings, notes: string[]): Machine {
  const cpuinfo = readFileOr('/proc/cpuinfo', '');
  const cpuModel = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  const allowed = parseCpuList(/^Cpus_allowed_list:\s*(.+)$/m.exec(readFileOr('/proc/self/status', ''))?.[1] ?? '');
  const allowedCpus = allowed.length > 0 ? allowed : os.cpus().map((_, i) => i);
  const ticks = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim());
  let pinning: Machine['pinning'];
  let pinNote: string;
  const hasTaskset = spawnSync('taskset', ['-c', String(allowedCpus[0] ?? 0), 'true']).status === 0;
  if (!settings.pin) {
    pinNote = 'not pinned (--no-pin)';
  } else if (!hasTaskset) {
    pinNote = 'not pinned: taskset (util-linux) not found; install util-linux to pin server and generator to different cores';
  } else if (allowedCpus.length < 2) {
    pinNote = `not pinned: only ${allowedCpus.length} CPU available, server and generator share it`;
  } else {
    // One core for the server (the baseline is single-threaded; the targets compare one core's
    // worth), the rest for the generator and this process.
    const server = [allowedCpus[allowedCpus.length - 1]!];
    const load = allowedCpus.slice(0, -1);
    const r = spawnSync('taskset', ['-a', '-p', '-c', load.join(','), String(process.pid)], { encoding: 'utf8' });
    if (r.status === 0) {
      pinning = { server, load };
      pinNote = `server on CPU ${server.join(',')}, generator on CPU ${load.join(',')}`;
    } else {
      pinNote = `not pinned: taskset -p failed (${(r.stderr ?? '').trim()})`;
    }
  }
  if (pinning === undefined) notes.push(`Pinning: ${pinNote}.`);
  let fdLimit = fdHardLimit('self');
  const need = settings.idleSessions + FD_HEADROOM;
  if (settings.only.includes('idle') && fdLimit < need) {
    // Children inherit the raised limit; this only works with the privilege to raise a hard limit.
    const r = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${need}:${need}`], { encoding: 'utf8' });
    if (r.status === 0) fdLimit = fdHardLimit('self');
    if (fdLimit < need) {
      notes.push(`The open-file limit is ${fdLimit}, below the ${need} the idle test needs; raise it (ulimit -n 65536 as root, or LimitNOFILE) and run again.`);
    }
  }
  return {
    cpuModel,
    cpus: os.cpus().length,
    allowedCpus,
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    date: new Date().toISOString(),
    loadAvgAtStart: os.loadavg().map((n) => Math.round(n * 100) / 100),
    clockTicksPerSec: Number.isFinite(ticks) && ticks > 0 ? ticks : 100,
    pinning,
    pinNote,
    fdLimit,
    commit: gitCommit(),
  };
}

// ---------------------------------------------------------------------------------------------
// /proc readers

interface ProcStat {
  readonly ppid: number;
  /** utime + stime, clock ticks, all threads. */
  readonly cpuTicks: number;
  /** cutime + cstime: children that have exited and been waited for. */
  readonly reapedChildTicks: number;
}

export function readProcStat(pid: number | 'self'): ProcStat | undefined {
  const text = readFileOr(`/proc/${pid}/stat`, '');
  // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  if (fields.length < 13) return undefined;
  return { ppid: Number(fields[1]), cpuTicks: Number(fields[11]) + Number(fields[12]), reapedChildTicks: Number(fields[13]) + Number(fields[14]) };
}

/** Direct children of `pid`, from /proc/<pid>/task/<tid>/children (or a scan of /proc). */
export function childPids(pid: number | 'self'): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text !== '') out.push(...text.split(' ').map(Number));
    }
    return out;
  } catch {
    const parent = pid === 'self' ? process.pid : pid;
    for (const entry of readdirSync('/proc')) {
      if (/^\d+$/.test(entry) && readProcStat(Number(entry))?.ppid === parent) out.push(Number(entry));
    }
    return out;
  }
}

export function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...childPids(all[i]!));
  return all;
}

export function vmRssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileOr(`/proc/${pid}/status`, ''));
  return m ? Number(m[1]) : 0;
}

/** Busy clock ticks of the whole machine (all CPUs), from /proc/stat. */
export function systemBusyTicks(): number {
  const line = readFileOr('/proc/stat', '').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest is already in user).
  return (v[0] ?? 0) + (v[1] ?? 0) + (v[2] ?? 0) + (v[5] ?? 0) + (v[6] ?? 0) + (v[7] ?? 0);
}

/** CPU ticks of this process and its children, live and exited (so a child that exits mid-window still counts). */
export function selfAndReapedTicks(): number {
  const s = readProcStat('self');
  return s === undefined ? 0 : s.cpuTicks + s.reapedChildTicks;
}
