import { Type } from '@sinclair/typebox';
import { DRIVER_NAME_RE, MODULE_NAME_RE } from '../host/port.js';
import { ADDRESS_RE, type PciAddress } from '../pci/address.js';
import { DEVICE_SERIAL_RE } from '../pci/device-serial.js';

/**
 * Names that end up in paths, in files the system parses (modprobe.d) or on a terminal: each
 * has one pattern, shared by the hand-written guards and the schemas.
 */
export const PciAddressSchema = Type.Unsafe<PciAddress>(
  Type.String({ pattern: ADDRESS_RE.source, description: 'PCI address dddd:bb:dd.f (hex)' }),
);

/** The same pattern typed as plain text, for formats whose TypeScript side keeps strings. */
export const PciAddressTextSchema = Type.String({
  pattern: ADDRESS_RE.source,
  description: 'PCI address dddd:bb:dd.f (hex)',
});

export const DriverNameSchema = Type.String({
  pattern: DRIVER_NAME_RE.source,
  description: 'kernel driver name',
});

export const ModuleNameSchema = Type.String({
  pattern: MODULE_NAME_RE.source,
  description: 'kernel module name',
});

/** A PCIe Device Serial Number as lspci -vv prints it: eight hex bytes, `-` between. */
export const DeviceSerialSchema = Type.String({
  pattern: DEVICE_SERIAL_RE.source,
  description: 'PCIe Device Serial Number (00-11-22-33-44-55-66-77)',
});

export function hexId(digits: number, description: string) {
  return Type.String({ pattern: `^[0-9a-f]{${digits}}$`, description });
}

/** Milliseconds since the epoch, or any other count that must stay exact in a double. */
export const SafeCount = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
