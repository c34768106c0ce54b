// Certificate serial numbers as text. One form everywhere: X509Certificate.serialNumber's
// (OpenSSL's BN_bn2hex: upper-case hex, whole bytes, no leading zero bytes, "0" for zero, a "-"
// before a negative one), so a serial read from a CRL compares equal to the certificate's.

/** RFC 5280 4.1.2.2: a serial is at most 20 octets. */
export const MAX_SERIAL_BYTES = 20;

/** `value` in X509Certificate.serialNumber's form. */
export function serialText(value: bigint): string {
  if (value === 0n) return '0';
  const magnitude = (value < 0n ? -value : value).toString(16).toUpperCase();
  return (value < 0n ? '-' : '') + (magnitude.length % 2 === 1 ? `0${magnitude}` : magnitude);
}

/** The number a serialText() string stands for. */
export function serialValue(text: string): bigint {
  return text.startsWith('-') ? -BigInt(`0x${text.slice(1)}`) : BigInt(`0x${text}`);
}

/**
 * A serial as people write it (any case, an optional 0x, bytes separated by colons as openssl
 * prints them) in serialText() form; undefined when it isn't one, or is longer than 20 octets.
 */
export function parseSerialInput(input: string): string | undefined {
  const digits = input.trim().replace(/^0x/i, '');
  if (!/^[0-9a-f]+(?::[0-9a-f]+)*$/i.test(digits)) return undefined;
  const value = BigInt(`0x${digits.replace(/:/g, '')}`);
  const text = serialText(value);
  return text.length > MAX_SERIAL_BYTES * 2 ? undefined : text;
}
