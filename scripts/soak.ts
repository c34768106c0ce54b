// `npm run soak -- --minutes N`: the chaos soak of issue 17. tls-echod runs with two workers,
// PROXY protocol, the scenario listener and client certificates, under a mixed load (echo of
// every size, idle sessions, slowloris, floods from thousands of addresses, half-closes,
// resumptions, client certificates, scenarios, the network fuzzer), with chaos every few
// seconds (kill -9 a worker, SIGHUP with a rotated certificate, SIGHUP with a broken one),
// while a control client echoes and every second is sampled. Passes (exit 0) when nothing
// grows past its bound, everything comes back to idle, the counts add up, and no byte was
// wrong; otherwise exit 1 with the failing checks. Bad flags: exit 2.
//
//   npm run soak [-- --minutes 3] [-- --out DIR] [-- --seed N]
//
// The pieces are in scripts/soak/: settings.ts (flags, timeouts, bounds), daemon.ts (the daemon
// under test), loads.ts, chaos.ts, control.ts, sampler.ts, checks.ts (the pass criteria),
// plot.ts and summary.ts, and harness.ts, which runs them. What it checks and the latest
// 30-minute run: docs/reliability.md.

import { run } from './soak/harness';
import { parseSettings } from './soak/settings';

run('soak', parseSettings('soak', process.argv.slice(2))).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`soak: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
