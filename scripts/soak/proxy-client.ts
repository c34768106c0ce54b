// A client of the daemon under --proxy-protocol: a TCP connection from 127.0.0.1 (the trusted
// proxy) that first sends a PROXY header naming the client address it stands for, then speaks
// TLS. The carried address is what admission counts, so one loopback source can be thousands
// of clients, IPv4 and IPv6.

import net from 'node:net';
import tls from 'node:tls';

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** A PROXY header for a TCP client at `address`:`port` (v1 text or v2 binary), to `dstPort`. */
export function proxyHeader(version: 1 | 2, address: string, port: number, dstPort: number): Buffer {
  const six = net.isIPv6(address);
  const dst = six ? '::1' : '127.0.0.1';
  if (version === 1) return Buffer.from(`PROXY ${six ? 'TCP6' : 'TCP4'} ${address} ${dst} ${port} ${dstPort}\r\n`, 'latin1');
  const addresses = six ? Buffer.concat([ipv6Bytes(address), ipv6Bytes(dst)]) : Buffer.from([...address.split('.').map(Number), 127, 0, 0, 1]);
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(port, 0);
  ports.writeUInt16BE(dstPort, 2);
  const length = Buffer.alloc(2);
  length.writeUInt16BE(addresses.length + 4);
  return Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, six ? 0x21 : 0x11]), length, addresses, ports]);
}

function ipv6Bytes(address: string): Buffer {
  const [head, tail] = address.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

export interface ProxiedOptions {
  readonly port: number;
  /** The client address the header carries. */
  readonly client: string;
  readonly version?: 1 | 2;
  /** Keep the socket readable after our end() (half-close). */
  readonly allowHalfOpen?: boolean;
}

/** A raw TCP connection from 127.0.0.1 that has sent its PROXY header (resolves once connected). */
export function connectProxiedTcp(options: ProxiedOptions): net.Socket {
  const socket = net.connect({ host: '127.0.0.1', port: options.port, localAddress: '127.0.0.1', allowHalfOpen: options.allowHalfOpen ?? false, noDelay: true });
  socket.write(proxyHeader(options.version ?? 1, options.client, 1024 + Math.floor(Math.random() * 60000), options.port));
  return socket;
}

/** A TLS connection through a PROXY header; `tlsOptions` as for tls.connect (ca, servername, session, ...). */
export function connectProxiedTls(options: ProxiedOptions, tlsOptions: tls.ConnectionOptions): tls.TLSSocket {
  const socket = connectProxiedTcp(options);
  return tls.connect({ ...tlsOptions, socket });
}
