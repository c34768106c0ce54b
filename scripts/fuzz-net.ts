// `npm run fuzz:net -- --minutes N`: the network fuzzer (scripts/soak/net-fuzz.ts) alone
// against the live daemon, in the soak's harness: the same daemon, control client, sampler and
// end checks (nothing exited or logged an uncaught error, every connection ended within the
// timeouts, the control client echoed byte-exact throughout, every count back to zero).
//
//   npm run fuzz:net [-- --minutes 3] [-- --out DIR] [-- --seed N]

import { run } from './soak/harness';
import { parseSettings } from './soak/settings';

run('fuzz-net', parseSettings('fuzz:net', process.argv.slice(2))).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`fuzz:net: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
