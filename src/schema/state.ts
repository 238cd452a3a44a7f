import { Type, type Static } from '@sinclair/typebox';
import { ADDRESS_RE } from '../pci/address.js';
import {
  DeviceSerialSchema,
  DriverNameSchema,
  PciAddressSchema,
  SafeCount,
  hexId,
} from './names.js';

/**
 * The state file (state.json). Adding a field: add it here (Type.Optional when older files lack
 * it); the TypeScript types below follow, and so do the validation and the emitted JSON Schema.
 * Unknown fields are refused, so a typo never loads as "absent".
 */
export const STATE_FORMAT = 'passthru-state/1';

/** What sat at an address when it was claimed: a claim is for a card, not a slot. */
export const DeviceIdentitySchema = Type.Object(
  {
    vendorId: hexId(4, 'PCI vendor id'),
    deviceId: hexId(4, 'PCI device id'),
    subsystemVendorId: hexId(4, 'PCI subsystem vendor id'),
    subsystemDeviceId: hexId(4, 'PCI subsystem device id'),
    /**
     * The PCIe Device Serial Number, when the card has one and it could be read (root only).
     * Absent in files written before serials were recorded: such a claim gains it at its next
     * verification, and is compared by ids alone until then.
     */
    serialNumber: Type.Optional(DeviceSerialSchema),
  },
  { additionalProperties: false },
);

export const ClaimSpecSchema = Type.Object(
  {
    address: PciAddressSchema,
    /**
     * Recorded when the claim is first seen with its device present; a different card at the
     * address later makes the claim `changed` until re-confirmed. Absent for claims of devices
     * that were not present yet, and in files written before identities were recorded.
     */
    identity: Type.Optional(DeviceIdentitySchema),
    /** Who asked: cli, api, kubernetes (for history and `why`). */
    source: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$' })),
    /** Also bind the other endpoints of the IOMMU group (a GPU's audio function). */
    withGroup: Type.Boolean(),
    /** Skip the host-critical guard. */
    force: Type.Boolean(),
    createdAt: SafeCount,
  },
  { additionalProperties: false },
);

/** What a device was bound to before passthru first touched it. Written BEFORE any write. */
export const LedgerEntrySchema = Type.Object(
  {
    address: PciAddressSchema,
    originalDriver: Type.Union([DriverNameSchema, Type.Null()]),
    vendorId: hexId(4, 'PCI vendor id'),
    deviceId: hexId(4, 'PCI device id'),
    subsystemVendorId: Type.Optional(hexId(4, 'PCI subsystem vendor id')),
    subsystemDeviceId: Type.Optional(hexId(4, 'PCI subsystem device id')),
    /** The card's Device Serial Number when it was recorded (absent when it had none or unread). */
    serialNumber: Type.Optional(DeviceSerialSchema),
    recordedAt: SafeCount,
    /** The claim that bound it (itself, or the claim whose --with-group pulled it in). */
    claim: Type.Optional(PciAddressSchema),
  },
  { additionalProperties: false },
);

const addressKey = Type.String({ pattern: ADDRESS_RE.source });

export const StateSchema = Type.Object(
  {
    format: Type.Literal(STATE_FORMAT),
    /** Incremented on every save: a store never silently goes back. */
    generation: SafeCount,
    claims: Type.Record(addressKey, ClaimSpecSchema, { additionalProperties: false }),
    ledger: Type.Record(addressKey, LedgerEntrySchema, { additionalProperties: false }),
  },
  { additionalProperties: false },
);

export type DeviceIdentity = Static<typeof DeviceIdentitySchema>;
export type ClaimSpec = Static<typeof ClaimSpecSchema>;
export type LedgerEntry = Static<typeof LedgerEntrySchema>;
export type State = Static<typeof StateSchema>;
