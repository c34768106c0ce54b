// `tls-echod bench <host:port>`: drives an echo server with TLS load, verifies every echoed
// byte, and prints a summary. Parses the flags (every problem listed at once, exit 2) and calls
// runLoad; exit 1 when the run saw errors. Progress goes to stderr once a second on a terminal.

import type { Command } from 'commander';
import { ConfigError, EchodError } from '../errors';
import { LOAD_DEFAULTS, LOAD_MODES, loadOptionProblems, MAX_CONNECTIONS, MAX_PROCESSES, MAX_SIZE_BYTES, type LoadMode, type LoadOptions } from '../client/load-options';
import { parseServername, parseTarget, parseTlsPin, parseWhole, readCa } from './check';
import { addClientCertOptions, readClientCert, type ClientCertFlags } from './client-cert-flags';

interface BenchFlags extends ClientCertFlags {
  mode?: string;
  connections?: string;
  duration?: string;
  warmup?: string;
  size?: string;
  ca?: string;
  insecure?: boolean;
  servername?: string;
  tls?: string;
  resume?: boolean;
  ramp?: string;
  readyFile?: string;
  processes?: string;
  timeout?: string;
  json?: boolean;
}

export function register(program: Command): void {
  const d = LOAD_DEFAULTS;
  const command = program
    .command('bench')
    .description('drive an echo server with TLS load, verify every echoed byte, report rates and latency (exit 1 on any error)')
    .argument('<host:port>', 'server to load, e.g. 127.0.0.1:4433')
    .option('--mode <mode>', `${LOAD_MODES.join(', ')} [default: ${d.mode}]`)
    .option('-c, --connections <n>', `concurrent connections (handshake: concurrent connect loops) [default: ${d.connections}]`)
    .option('--duration <s>', `measured time after the warmup (s); idle mode: how long to hold [default: ${d.durationMs / 1000}]`)
    .option('--warmup <s>', `time run but not counted, before measuring (s) [default: ${d.warmupMs / 1000}]`)
    .option('--size <bytes>', `bytes per echo (handshake, pingpong, idle) or per write (stream) [default: ${d.sizeBytes}]`)
    .option('--ca <pem>', 'verify the server against this PEM CA [default: no verification]')
    .option('--insecure', 'skip certificate verification (the default without --ca)')
    .option('--servername <name>', 'SNI and name verified [default: the host when it is a name; none for an IP]')
    .option('--tls <version>', 'pin the TLS version: 1.2 or 1.3 [default: negotiate]');
  addClientCertOptions(command)
    .option('--resume', 'handshake mode: offer session resumption [default: full handshakes]')
    .option('--ramp <per-s>', `idle mode: new connections per second while opening [default: ${d.rampPerSec}]`)
    .option('--ready-file <path>', 'idle mode: write the established count here once all connections are open')
    .option('--processes <n>', `generator processes, each with a share of the connections (one Node process can't saturate a server with handshakes) [default: ${d.processes}]`)
    .option('--timeout <ms>', `longest a connect or one echo may take before it counts as an error (ms) [default: ${d.timeoutMs}]`)
    .option('--json', 'print the result as one JSON object')
    .action(async (target: string, flags: BenchFlags) => {
      const options = benchOptionsFromFlags(target, flags);
      // The generator is loaded when it runs: `serve` never needs it (docs/architecture.md).
      const [{ runLoad }, { formatLoadProgress, formatLoadResult }] = await Promise.all([import('../client/load-generator'), import('../client/load-report')]);
      const controller = new AbortController();
      // Ctrl-C ends the run early but still prints what was measured.
      const onSigint = (): void => controller.abort();
      process.once('SIGINT', onSigint);
      const progress = process.stderr.isTTY === true;
      let result;
      try {
        result = await runLoad({
          ...options,
          signal: controller.signal,
          onProgress: progress ? (p) => process.stderr.write(formatLoadProgress(p, options.mode ?? LOAD_DEFAULTS.mode) + '\n') : undefined,
        });
      } finally {
        process.off('SIGINT', onSigint);
      }
      process.stdout.write((flags.json === true ? JSON.stringify(result) : formatLoadResult(result)) + '\n');
      if (result.errors > 0) {
        const code = result.mismatches > 0 ? 'ECHOD_ECHO_MISMATCH' : 'ECHOD_CHECK_FAILED';
        throw new EchodError(code, `bench saw ${result.errors} error(s), ${result.mismatches} of them echo mismatches; first: ${result.firstError ?? 'unknown'}`);
      }
    });
}

/** Turns bench's flags into runLoad options; throws ConfigError listing every problem. */
export function benchOptionsFromFlags(target: string, flags: BenchFlags): LoadOptions {
  const problems: string[] = [];
  const address = parseTarget(target, problems);
  let mode: LoadMode | undefined;
  if (flags.mode !== undefined) {
    if ((LOAD_MODES as readonly string[]).includes(flags.mode)) mode = flags.mode as LoadMode;
    else problems.push(`--mode: must be one of ${LOAD_MODES.join(', ')}, got ${JSON.stringify(flags.mode)}`);
  }
  const connections = parseWhole(flags.connections, '--connections', 1, MAX_CONNECTIONS, '', problems);
  const durationSec = parseSeconds(flags.duration, '--duration', false, problems);
  const warmupSec = parseSeconds(flags.warmup, '--warmup', true, problems);
  const sizeBytes = parseWhole(flags.size, '--size', 0, MAX_SIZE_BYTES, ' (bytes)', problems);
  const tls = parseTlsPin(flags.tls, problems);
  const servername = parseServername(flags.servername, problems);
  const rampPerSec = parseWhole(flags.ramp, '--ramp', 1, 1_000_000, ' (connections/s)', problems);
  const processes = parseWhole(flags.processes, '--processes', 1, MAX_PROCESSES, '', problems);
  const timeoutMs = parseWhole(flags.timeout, '--timeout', 1, 3_600_000, ' (ms)', problems);
  if (flags.readyFile !== undefined && flags.readyFile === '') problems.push('--ready-file: give a file path');
  const ca = readCa(flags.ca, problems);
  // Read once here; generator processes get the PEM text with the rest of the options.
  const clientCert = readClientCert(flags, problems);
  if (flags.ca !== undefined && flags.insecure === true) {
    problems.push('--ca and --insecure contradict each other: give --ca to verify the server, or --insecure (or neither) to skip verification');
  }
  const options: LoadOptions = {
    // Placeholders when the address is bad: that is already a problem, and the cross-checks below still run.
    host: address?.host ?? 'unset',
    port: address?.port ?? 1,
    mode,
    connections,
    durationMs: durationSec === undefined ? undefined : Math.round(durationSec * 1000),
    warmupMs: warmupSec === undefined ? undefined : Math.round(warmupSec * 1000),
    sizeBytes,
    ca,
    insecure: ca === undefined,
    servername,
    tls,
    clientCert,
    resume: flags.resume === true ? true : undefined,
    rampPerSec,
    readyFile: flags.readyFile,
    processes,
    timeoutMs,
  };
  // Cross-flag checks: --size 0 outside handshake mode, --ready-file without idle, ...
  problems.push(...loadOptionProblems(options));
  if (problems.length > 0) throw new ConfigError(problems);
  return options;
}

/** Seconds, decimals allowed (`0.5`); zero only when `zeroOk`. */
function parseSeconds(text: string | undefined, flag: string, zeroOk: boolean, problems: string[]): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim().replace(/s$/, '');
  const n = Number(t);
  if (!/^\d+(\.\d+)?$/.test(t) || (!zeroOk && n === 0) || n > 86_400) {
    problems.push(`${flag}: must be a number of seconds ${zeroOk ? 'from 0' : 'above 0'} up to 86400 (e.g. 5 or 0.5), got ${JSON.stringify(text)}`);
    return undefined;
  }
  return n;
}
