// Arbitrary IP addresses for the property tests, and the textual forms a config file, a proxy or
// a peer may write them in: IPv6 full or compressed, with or without leading zeros, either
// case, with a dotted IPv4 tail. Node's own formatting is the oracle they are checked against.

import net from 'node:net';
import fc from 'fast-check';

export function groupsToBytes(groups: readonly number[]): Buffer {
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(g, i * 2));
  return b;
}

function groupsOf(bytes: Buffer): number[] {
  return Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2));
}

export const ipv4Bytes: fc.Arbitrary<Buffer> = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((a) => Buffer.from(a));

/** IPv6 bytes biased towards zero runs and the IPv4-mapped (::ffff:0:0/96) and -compatible ranges. */
export const ipv6Bytes: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a)),
  fc.array(fc.oneof(fc.constant(0), fc.constant(0xffff), fc.constant(1), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 }).map(groupsToBytes),
  fc.tuple(fc.constantFrom(0, 0xffff), ipv4Bytes).map(([g5, v4]) => Buffer.concat([Buffer.alloc(10), Buffer.from([g5 >> 8, g5 & 0xff]), v4])),
);

/** How an IPv6 address is written: case, leading zeros, "::" for the first zero run, a dotted IPv4 tail. */
export interface Ipv6Style {
  readonly upper: boolean;
  readonly pad: boolean;
  readonly compress: boolean;
  readonly dotted: boolean;
}

export const ipv6Style: fc.Arbitrary<Ipv6Style> = fc.record({ upper: fc.boolean(), pad: fc.boolean(), compress: fc.boolean(), dotted: fc.boolean() });

export const PLAIN: Ipv6Style = { upper: false, pad: false, compress: false, dotted: false };

export function writeIpv6(bytes: Buffer, style: Ipv6Style): string {
  const groups = groupsOf(bytes).map((g) => g.toString(16).padStart(style.pad ? 4 : 1, '0'));
  let tail: string[] = [];
  if (style.dotted) {
    groups.splice(6, 2);
    tail = [`${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`];
  }
  let text = [...groups, ...tail].join(':');
  if (style.compress) {
    // "::" for the first run of zero groups: any run will do, a reader must take them all.
    const zero = style.pad ? '0000' : '0';
    const run = groups.findIndex((g) => g === zero);
    if (run !== -1) {
      let end = run;
      while (end < groups.length && groups[end] === zero) end++;
      text = `${groups.slice(0, run).join(':')}::${[...groups.slice(end), ...tail].join(':')}`;
    }
  }
  return style.upper ? text.toUpperCase() : text;
}

export function writeIpv4(bytes: Buffer): string {
  return Array.from(bytes).join('.');
}

/** How Node itself writes an IPv6 address (libuv's inet_ntop). */
export function nodeIpv6(bytes: Buffer): string {
  return new net.SocketAddress({ address: writeIpv6(bytes, PLAIN), family: 'ipv6' }).address;
}

/** Whether 16 bytes are an IPv4-mapped address, ::ffff:a.b.c.d. */
export function isMapped(bytes: Buffer): boolean {
  return bytes.length === 16 && bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
}
