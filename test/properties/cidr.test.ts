// Properties of CIDR parsing and matching (src/config/cidr.ts) against a reference model that
// compares address bytes bit by bit with BigInt, and against Node (net.isIP, net.SocketAddress,
// net.BlockList) where Node has an answer: every textual form of an address, IPv4-mapped
// addresses and blocks, every prefix, garbage, and the per-network keys of IPv6 clients.
//
// The rule for IPv4-mapped addresses, as admission applies it: a client's address is normalised
// (::ffff:a.b.c.d is a.b.c.d), a block inside ::ffff:0:0/96 is the IPv4 block it covers, and a
// wider IPv6 block (::/0, ::ffff:0:0/95) matches no IPv4 client, as ::/0 in nginx's allow/deny.

import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { CidrList, ipv6NetworkKey, normalizeAddress, parseCidr, type Cidr } from '../../src/config/cidr';
import { ipv4Bytes, ipv6Bytes, ipv6Style, isMapped, nodeIpv6, writeIpv4, writeIpv6, type Ipv6Style } from './addresses';
import { checkProperty } from './budget';

// ---------------------------------------------------------------------------------------------
// The model: addresses and blocks as bytes.

interface Address {
  readonly bytes: Buffer;
  readonly style: Ipv6Style;
}

interface Block {
  readonly address: Address;
  readonly prefix: number;
  /** Leading zeros on the prefix ("/08"): accepted, the number is what counts. */
  readonly zeros: number;
}

const address: fc.Arbitrary<Address> = fc.record({ bytes: fc.oneof(ipv4Bytes, ipv6Bytes), style: ipv6Style });

function text(a: Address): string {
  return a.bytes.length === 4 ? writeIpv4(a.bytes) : writeIpv6(a.bytes, a.style);
}

const block: fc.Arbitrary<Block> = address.chain((a) =>
  fc.record({
    address: fc.constant(a),
    // Biased towards the ends and, for IPv6, the IPv4-mapped boundary at 96.
    prefix: fc.oneof(fc.integer({ min: 0, max: a.bytes.length * 8 }), fc.constantFrom(0, a.bytes.length * 8, ...(a.bytes.length === 16 ? [95, 96, 97, 104] : [31, 1]))),
    zeros: fc.oneof({ arbitrary: fc.constant(0), weight: 5 }, fc.integer({ min: 1, max: 2 })),
  }),
);

function blockText(b: Block): string {
  const prefix = String(b.prefix);
  return `${text(b.address)}/${prefix.padStart(Math.min(3, prefix.length + b.zeros), '0')}`;
}

function toBigInt(bytes: Buffer): bigint {
  return BigInt(`0x${bytes.toString('hex')}`);
}

/** Whether the first `prefix` bits of two equal-length byte strings agree, bit by bit. */
function samePrefix(a: Buffer, b: Buffer, prefix: number): boolean {
  const bits = BigInt(a.length * 8);
  const shift = bits - BigInt(prefix);
  return toBigInt(a) >> shift === toBigInt(b) >> shift;
}

/** A client address as admission sees it: an IPv4-mapped one is the IPv4 address. */
function canonicalAddress(bytes: Buffer): Buffer {
  return isMapped(bytes) ? bytes.subarray(12) : bytes;
}

/** A block as the model reads it: one inside ::ffff:0:0/96 is the IPv4 block it covers. */
function canonicalBlock(b: Block): { bytes: Buffer; prefix: number } {
  if (isMapped(b.address.bytes) && b.prefix >= 96) return { bytes: b.address.bytes.subarray(12), prefix: b.prefix - 96 };
  return { bytes: b.address.bytes, prefix: b.prefix };
}

function modelContains(blocks: readonly Block[], a: Buffer): boolean {
  const client = canonicalAddress(a);
  return blocks.some((b) => {
    const c = canonicalBlock(b);
    return c.bytes.length === client.length && samePrefix(c.bytes, client, c.prefix);
  });
}

/** An address near a block, so that membership is decided by its last bits, not by chance. */
function near(b: Block, tail: Buffer, flipBit: number): Buffer {
  const bytes = Buffer.from(b.address.bytes);
  const bits = bytes.length * 8;
  for (let bit = b.prefix; bit < bits; bit++) {
    const byte = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    bytes[byte] = (bytes[byte]! & ~mask) | (tail[byte % tail.length]! & mask);
  }
  // Sometimes a bit inside the prefix too, which takes it out.
  if (flipBit < bits) bytes[flipBit >> 3]! ^= 0x80 >> (flipBit & 7);
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// The properties.

test('cidr property: every textual form of a block parses to its family, masked network and prefix', async () => {
  await checkProperty(
    fc.property(block, (b) => {
      const parsed = parseCidr(blockText(b));
      const c = canonicalBlock(b);
      const bits = c.bytes.length * 8;
      const network = toBigInt(c.bytes) & (c.prefix === 0 ? 0n : ((1n << BigInt(c.prefix)) - 1n) << BigInt(bits - c.prefix));
      assert.deepEqual(parsed, { family: bits === 32 ? 4 : 6, network, prefix: c.prefix, text: blockText(b) });
      // A bare address is the whole-length block.
      assert.deepEqual(parseCidr(text(b.address))?.prefix, canonicalBlock({ ...b, prefix: b.address.bytes.length * 8 }).prefix);
    }),
    { runs: 3000 },
  );
});

test('cidr property: CidrList.contains agrees with the bit-by-bit model and with net.BlockList', async () => {
  const probe = fc.tuple(fc.nat({ max: 7 }), fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a)), fc.nat({ max: 300 }), ipv6Style);
  await checkProperty(
    fc.property(fc.array(block, { minLength: 1, maxLength: 6 }), fc.array(fc.oneof(address, probe), { minLength: 1, maxLength: 10 }), (blocks, probes) => {
      const list = new CidrList(blocks.map((b) => parseCidr(blockText(b))).filter((c): c is Cidr => c !== undefined));
      assert.equal(list.size, blocks.length);
      // One BlockList per family: Node's matches an IPv4 address against IPv6 blocks covering
      // its mapped form (so ::/0 takes every IPv4 client), which ours deliberately does not.
      const blockLists = { ipv4: new net.BlockList(), ipv6: new net.BlockList() };
      for (const b of blocks) {
        const c = canonicalBlock(b);
        if (c.bytes.length === 4) blockLists.ipv4.addSubnet(writeIpv4(c.bytes), c.prefix, 'ipv4');
        else blockLists.ipv6.addSubnet(nodeIpv6(c.bytes), c.prefix, 'ipv6');
      }
      for (const p of probes) {
        const a: Address = Array.isArray(p) ? { bytes: near(blocks[p[0] % blocks.length]!, p[1], p[2]), style: p[3] } : p;
        const client = normalizeAddress(text(a));
        const want = modelContains(blocks, a.bytes);
        assert.equal(list.contains(client), want, `${client} in ${blocks.map(blockText).join(', ')}`);
        assert.equal(list.contains(client), want, 'the same answer from the memo');
        const family = net.isIP(client) === 4 ? 'ipv4' : 'ipv6';
        assert.equal(blockLists[family].check(client, family), want, `BlockList on ${client}`);
      }
    }),
    { runs: 1000 },
  );
});

test('cidr property: normalizeAddress turns every form of a mapped address into its IPv4, and nothing else', async () => {
  await checkProperty(
    fc.property(address, (a) => {
      const t = text(a);
      const normal = normalizeAddress(t);
      if (a.bytes.length === 4) return assert.equal(normal, t);
      // Node writes a mapped address as ::ffff:a.b.c.d whatever form it was given in.
      const node = new net.SocketAddress({ address: t, family: 'ipv6' }).address;
      assert.equal(node.startsWith('::ffff:') && net.isIPv4(node.slice(7)), isMapped(a.bytes));
      assert.equal(normal, isMapped(a.bytes) ? writeIpv4(a.bytes.subarray(12)) : t);
    }),
    { runs: 3000 },
  );
});

/** The rule parseCidr keeps, written with Node's isIP: "<address>[/<1-3 digits> within the family's bits]". */
function acceptable(s: string): boolean {
  const slash = s.indexOf('/');
  const addr = slash === -1 ? s : s.slice(0, slash);
  const family = net.isIP(addr);
  if (family === 0) return false;
  if (slash === -1) return true;
  const p = s.slice(slash + 1);
  return /^\d{1,3}$/.test(p) && Number(p) <= (family === 4 ? 32 : 128);
}

/** Garbage, near-misses of valid blocks, and prefixes out of range or badly written. */
const hostileText: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 50 }),
  fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:./%-+ x'.split('')), maxLength: 50 }),
  fc.tuple(block, fc.constantFrom('', '-1', '+8', ' 8', '8 ', '0x8', '1e1', '33', '129', '200', '0000', '1/2', '٣', '８')).map(([b, p]) => `${text(b.address)}/${p}`),
  fc.tuple(block, fc.nat(), fc.string({ maxLength: 2 })).map(([b, at, s]) => {
    const t = blockText(b);
    const i = at % (t.length + 1);
    return `${t.slice(0, i)}${s}${t.slice(i + 1)}`;
  }),
);

test('cidr property: garbage and bad prefixes are refused, never thrown on; normalizeAddress passes them through', async () => {
  await checkProperty(
    fc.property(hostileText, (s) => {
      const parsed = parseCidr(s);
      assert.equal(parsed !== undefined, acceptable(s), `parseCidr(${JSON.stringify(s)}) = ${String(parsed?.network)}`);
      const normal = normalizeAddress(s);
      assert.ok(normal === s || (net.isIPv6(s) && net.isIPv4(normal)), `normalizeAddress(${JSON.stringify(s)}) = ${normal}`);
      if (parsed !== undefined) new CidrList([parsed]).contains(normal);
    }),
    { runs: 5000 },
  );
});

test('cidr property: two IPv6 addresses share an ipv6NetworkKey iff their first p bits are equal; IPv4 is per address', async () => {
  await checkProperty(
    fc.property(ipv6Bytes, fc.nat({ max: 128 }), fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.integer({ min: 1, max: 128 }), ipv6Style, ipv6Style, (a, from, tail, p, styleA, styleB) => {
      // b: a's first `from` bits, then anything.
      const b = Buffer.from(a);
      for (let bit = from; bit < 128; bit++) {
        const mask = 0x80 >> (bit & 7);
        b[bit >> 3] = (b[bit >> 3]! & ~mask) | (tail[bit >> 3]! & mask);
      }
      const same = ipv6NetworkKey(writeIpv6(a, styleA), p) === ipv6NetworkKey(writeIpv6(b, styleB), p);
      assert.equal(same, samePrefix(a, b, p), `${writeIpv6(a, styleA)} and ${writeIpv6(b, styleB)} at /${p}`);
    }),
    { runs: 3000 },
  );
  await checkProperty(
    fc.property(ipv4Bytes, fc.integer({ min: 1, max: 128 }), (a, p) => {
      assert.equal(ipv6NetworkKey(writeIpv4(a), p), writeIpv4(a));
    }),
    { runs: 200 },
  );
});
