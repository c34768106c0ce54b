// The benchmark's baseline: a bare Node TLS echo server, `tls.createServer(opts, s => s.pipe(s))`
// and nothing else, to compare tls-echod against on the same machine.
//
//   node dist/scripts/baseline-server.js --cert server.pem --key server-key.pem [--listen 127.0.0.1:0] [--client-ca ca.pem]
//
// Prints `listening <port>` on stdout once it accepts connections. Two things beyond the bare
// pipe, both so the comparison is fair rather than flattering: an 'error' handler per socket
// (without it the first client reset crashes the process) and noDelay (without it Nagle plus
// delayed ACK adds about 40 ms to an echo that follows the handshake; see DESIGN.md).

import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { parseServerArgs } from './server-args';

function main(): void {
  const { cert, key, listen, clientCa } = parseServerArgs('baseline-server');
  const mtls = clientCa === undefined ? {} : { ca: clientCa, requestCert: true, rejectUnauthorized: true };
  const server = tls.createServer({ cert, key, noDelay: true, ...mtls }, (socket) => {
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  server.listen(listen.port, listen.host, () => {
    process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
  });
}

main();
