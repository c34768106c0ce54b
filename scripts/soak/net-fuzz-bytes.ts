// The bytes the network fuzzer (net-fuzz.ts) sends: a small PROXY protocol
// encoder (v1 TCP4/TCP6/UNKNOWN, v2 PROXY/LOCAL with TLVs), TLS record framing, and mutators
// for all three. Pure: no sockets here, so what a connection sent follows from its seed alone.

import { addressBytes } from '../../src/config/cidr';
import type { Prng } from './prng';

/** A seed of its own for connection `id` of a run seeded `seed`, so one connection can be replayed alone. */
export function connectionSeed(seed: number, id: number): number {
  return (seed ^ Math.imul(id + 1, 0x9e3779b1)) >>> 0;
}

export interface Endpoint {
  readonly address: string;
  readonly port: number;
}

const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
/** Offset of the v2 header's 16-bit length of what follows the fixed part. */
export const V2_LENGTH_OFFSET = 14;

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}

/** A v1 header naming `client`; the destination's family follows the client's, as a balancer's would. */
export function proxyV1(client: Endpoint, server: Endpoint): Buffer {
  const six = client.address.includes(':');
  const destination = six ? (server.address.includes(':') ? server.address : '::1') : server.address.includes(':') ? '127.0.0.1' : server.address;
  return Buffer.from(`PROXY ${six ? 'TCP6' : 'TCP4'} ${client.address} ${destination} ${client.port} ${server.port}\r\n`, 'latin1');
}

/** v1's "the proxy doesn't know": the daemon takes the connection's own peer as the client. */
export const PROXY_V1_UNKNOWN = Buffer.from('PROXY UNKNOWN\r\n', 'latin1');

/** A v2 PROXY header for `client` (TCP over IPv4 or IPv6) followed by `tlvs`, or a LOCAL one (no addresses) when client is undefined. */
export function proxyV2(client: Endpoint | undefined, server: Endpoint, tlvs: Buffer = Buffer.alloc(0)): Buffer {
  if (client === undefined) return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00]), u16(tlvs.length), tlvs]);
  const six = client.address.includes(':');
  const destination = six === server.address.includes(':') ? server.address : six ? '::1' : '127.0.0.1';
  const block = Buffer.concat([addressBytes(client.address), addressBytes(destination), u16(client.port), u16(server.port)]);
  return Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, six ? 0x21 : 0x11]), u16(block.length + tlvs.length), block, tlvs]);
}

/** TLV types a balancer sends (ALPN, authority, CRC32C, NOOP, unique id, SSL, netns) and one nobody defines. */
const TLV_TYPES = [0x01, 0x02, 0x03, 0x04, 0x05, 0x20, 0x30, 0xe7];

/** `count` well-formed TLVs of random types, each at most `maxValueBytes` long. */
export function randomTlvs(rng: Prng, count: number, maxValueBytes: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const value = rng.bytes(rng.below(maxValueBytes + 1));
    parts.push(Buffer.from([rng.pick(TLV_TYPES)]), u16(value.length), value);
  }
  return Buffer.concat(parts);
}

/** A valid header of a random kind for `client`: v1 TCP4/TCP6 (or UNKNOWN), v2 PROXY with TLVs, or v2 LOCAL. */
export function validProxyHeader(rng: Prng, client: Endpoint, server: Endpoint): Buffer {
  const roll = rng.below(10);
  if (roll < 4) return proxyV1(client, server);
  if (roll === 4) return PROXY_V1_UNKNOWN;
  // Kept well inside the daemon's 2 KiB bound for a whole v2 header.
  const tlvs = rng.chance(0.6) ? randomTlvs(rng, rng.int(1, 4), 200) : Buffer.alloc(0);
  return proxyV2(roll === 9 ? undefined : client, server, tlvs);
}

/** TLS record framing: `payload` as one record of `type` (22 handshake, 23 application data, ...). */
export function tlsRecord(type: number, version: number, payload: Buffer, length = payload.length): Buffer {
  return Buffer.concat([Buffer.from([type & 0xff, (version >> 8) & 0xff, version & 0xff]), u16(length), payload]);
}

/** The handshake message inside a single-record ClientHello. */
export function helloMessage(record: Buffer): Buffer {
  return record.subarray(5, Math.min(record.length, 5 + record.readUInt16BE(3)));
}

/** A record's worth of bytes changed at random: bit flips, bytes set, cut, inserted, deleted, duplicated or grown. */
export function mutateBytes(rng: Prng, input: Buffer, maxGrowBytes = 4096): Buffer {
  let out = Buffer.from(input);
  const rounds = rng.int(1, 4);
  for (let r = 0; r < rounds; r++) {
    const at = out.length === 0 ? 0 : rng.below(out.length);
    switch (rng.below(7)) {
      case 0:
        if (out.length > 0) out[at] = out[at]! ^ (1 << rng.below(8));
        break;
      case 1:
        if (out.length > 0) out[at] = rng.pick([0x00, 0x01, 0x7f, 0x80, 0xff, 0x0a, 0x0d, 0x20]);
        break;
      case 2:
        out = out.subarray(0, at);
        break;
      case 3:
        out = Buffer.concat([out.subarray(0, at), rng.bytes(rng.int(1, 64)), out.subarray(at)]);
        break;
      case 4:
        out = Buffer.concat([out.subarray(0, at), out.subarray(Math.min(out.length, at + rng.int(1, 32)))]);
        break;
      case 5:
        out = Buffer.concat([out.subarray(0, at), out.subarray(at, at + rng.int(1, 64)), out.subarray(at)]);
        break;
      default:
        out = Buffer.concat([out, rng.bytes(rng.int(1, maxGrowBytes))]);
    }
  }
  return out;
}

/** A valid PROXY header made wrong: generic mutations, or (v2) its length field set to something else. */
export function mutateProxyHeader(rng: Prng, header: Buffer): Buffer {
  const isV2 = header.subarray(0, 12).equals(V2_SIGNATURE);
  if (isV2 && header.length >= 16 && rng.chance(0.3)) {
    const out = Buffer.from(header);
    out.writeUInt16BE(rng.pick([0, 1, 11, 35, 2032, 2033, 0xffff, rng.below(0x10000)]), V2_LENGTH_OFFSET);
    return out;
  }
  if (!isV2 && rng.chance(0.2)) {
    // A v1 header grown past its 107-byte bound without its CRLF, as a flood of one line.
    return Buffer.concat([header.subarray(0, header.length - 2), Buffer.alloc(rng.int(100, 3000), 0x20)]);
  }
  return mutateBytes(rng, header);
}

/** A ClientHello record made wrong in one of the ways a parser must survive. */
export function mutateHello(rng: Prng, record: Buffer): Buffer {
  const message = helloMessage(record);
  switch (rng.below(6)) {
    case 0: {
      // The record length changed, the bytes not.
      const out = Buffer.from(record);
      out.writeUInt16BE(rng.pick([0, 1, 4, message.length - 1, message.length + 1, 16_384, 16_385, 18_432, 0xffff]) & 0xffff, 3);
      return out;
    }
    case 1: {
      // The handshake message's own 24-bit length changed.
      const out = Buffer.from(record);
      if (out.length >= 9) out.writeUIntBE(rng.pick([0, 1, message.length, 0xffffff, rng.below(0x1000000)]), 6, 3);
      return out;
    }
    case 2:
      return inRecords(message, rng.int(1, 64), rng);
    case 3:
      return oversizedRecord(rng, message);
    case 4:
      return record.subarray(0, rng.below(record.length));
    default:
      return tlsRecord(22, 0x0301, mutateBytes(rng, message, 512));
  }
}

/** `message` as handshake records of `fragmentBytes` each, a few of them with a wrong version or type. */
export function inRecords(message: Buffer, fragmentBytes: number, rng?: Prng): Buffer {
  const records: Buffer[] = [];
  for (let at = 0; at < message.length; at += fragmentBytes) {
    const odd = rng?.chance(0.05) === true;
    records.push(tlsRecord(odd ? rng!.pick([20, 21, 23, 24, 0]) : 22, odd ? rng!.below(0x10000) : 0x0301, message.subarray(at, at + fragmentBytes)));
  }
  return Buffer.concat(records);
}

/** A handshake record longer than TLS allows (over 2^14 + 2048 bytes), the hello at its start. */
export function oversizedRecord(rng: Prng, message: Buffer): Buffer {
  const length = rng.int(16_384 + 2049, 0xffff);
  const filler = Buffer.alloc(Math.max(0, length - message.length), rng.below(256));
  return tlsRecord(22, 0x0301, Buffer.concat([message, filler]).subarray(0, length));
}

/** Raw records for a live session: random type, version and length; short, over the limit, or garbage. */
export function randomRecords(rng: Prng): Buffer {
  const parts: Buffer[] = [];
  const count = rng.int(1, 4);
  for (let i = 0; i < count; i++) {
    const type = rng.chance(0.7) ? rng.pick([20, 21, 22, 23, 24]) : rng.below(256);
    const version = rng.chance(0.7) ? rng.pick([0x0301, 0x0303, 0x0304]) : rng.below(0x10000);
    switch (rng.below(4)) {
      case 0:
        parts.push(tlsRecord(type, version, rng.bytes(rng.int(0, 2048))));
        break;
      case 1: {
        // Promises more than it holds: the rest never comes.
        const length = rng.int(16, 16_384);
        parts.push(tlsRecord(type, version, rng.bytes(rng.below(length)), length));
        break;
      }
      case 2: {
        // Over the ciphertext maximum (2^14 + 2048); some of the body sent.
        const length = rng.int(18_433, 0xffff);
        parts.push(tlsRecord(type, version, rng.bytes(rng.below(4096)), length));
        break;
      }
      default:
        parts.push(rng.bytes(rng.int(1, 512)));
    }
  }
  return Buffer.concat(parts);
}

/** `data` in write-sized pieces: one, a few, or one byte each (bounded to 256 writes). */
export function splitWrites(rng: Prng, data: Buffer): Buffer[] {
  const mode = rng.below(3);
  const size = mode === 0 ? data.length : mode === 1 ? rng.int(1, 512) : Math.max(1, Math.ceil(data.length / 256));
  const pieces: Buffer[] = [];
  for (let at = 0; at < data.length; at += Math.max(1, size)) pieces.push(data.subarray(at, at + Math.max(1, size)));
  return pieces;
}
