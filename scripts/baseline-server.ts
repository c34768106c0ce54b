// The benchmark's baseline: a bare Node TLS echo server, `tls.createServer(opts, s => s.pipe(s))`
// and nothing else, to compare tls-echod against on the same machine.
//
//   node dist/scripts/baseline-server.js --cert server.pem --key server-key.pem [--listen 127.0.0.1:0]
//
// Prints `listening <port>` on stdout once it accepts connections. Two things beyond the bare
// pipe, both so the comparison is fair rather than flattering: an 'error' handler per socket
// (without it the first client reset crashes the process) and noDelay (without it Nagle plus
// delayed ACK adds about 40 ms to an echo that follows the handshake; see DESIGN.md).

import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { parseArgs } from 'node:util';
import { parseHostPort } from '../src/config';

function main(): void {
  let values: { cert?: string; key?: string; listen?: string };
  try {
    ({ values } = parseArgs({ options: { cert: { type: 'string' }, key: { type: 'string' }, listen: { type: 'string' } } }));
  } catch (err) {
    usage((err as Error).message);
  }
  if (values.cert === undefined || values.key === undefined) usage('--cert and --key are required');
  let listen;
  try {
    listen = parseHostPort(values.listen ?? '127.0.0.1:0');
  } catch (err) {
    usage(`--listen: ${(err as Error).message}`);
  }
  const server = tls.createServer({ cert: readFileSync(values.cert), key: readFileSync(values.key), noDelay: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  server.listen(listen.port, listen.host, () => {
    process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
  });
}

function usage(problem: string): never {
  process.stderr.write(`baseline-server: ${problem}\nusage: baseline-server --cert <pem> --key <pem> [--listen host:port]\n`);
  process.exit(2);
}

main();
