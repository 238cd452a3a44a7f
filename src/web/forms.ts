import { Type, type Static } from '@sinclair/typebox';

/**
 * The page's form bodies (application/x-www-form-urlencoded, parsed to strings). The CSRF field
 * is taken out by the auth hooks before validation (src/http/auth.ts), so it is not listed.
 */
export const PageActionFormSchema = Type.Object(
  {
    address: Type.String({ maxLength: 64 }),
    withGroup: Type.Optional(Type.Literal('1')),
  },
  { additionalProperties: false },
);
export type PageActionForm = Static<typeof PageActionFormSchema>;

/** The filters of /devices: the flags of `passthru list`, checked there. */
export const DeviceFilterQuerySchema = Type.Object(
  {
    class: Type.Optional(Type.String({ maxLength: 16 })),
    vendor: Type.Optional(Type.String({ maxLength: 16 })),
    driver: Type.Optional(Type.String({ maxLength: 64 })),
    group: Type.Optional(Type.String({ maxLength: 8 })),
  },
  { additionalProperties: false },
);
export type DeviceFilterQuery = Static<typeof DeviceFilterQuerySchema>;

export const ActionQuerySchema = Type.Object(
  {
    address: Type.String({ maxLength: 64 }),
    withGroup: Type.Optional(Type.Literal('1')),
  },
  { additionalProperties: false },
);

export const OverviewQuerySchema = Type.Object(
  {
    claimed: Type.Optional(Type.String({ maxLength: 64 })),
    released: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);
export type OverviewQuery = Static<typeof OverviewQuerySchema>;
