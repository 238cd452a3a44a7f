/** Parse a sysfs hex attribute ("0x8086\n") into a lowercase, zero-padded id without 0x. */
export function sysfsHex(raw: string | null, digits: number): string | null {
  if (raw === null) return null;
  const t = raw.trim().toLowerCase().replace(/^0x/, '');
  if (!/^[0-9a-f]+$/.test(t)) return null;
  const n = parseInt(t, 16);
  return n.toString(16).padStart(digits, '0').slice(-digits);
}

export function sysfsInt(raw: string | null): number | null {
  if (raw === null) return null;
  const t = raw.trim();
  if (!/^-?\d+$/.test(t)) return null;
  return parseInt(t, 10);
}

export function isHexId(s: string, digits: number): boolean {
  return new RegExp(`^[0-9a-f]{${digits}}$`).test(s);
}
