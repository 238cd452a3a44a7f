/**
 * The API's request bodies under the names the routes use: values are the schema layer's
 * typebox schemas (src/schema/api.ts), which fastify validates every body with before a handler
 * runs; the types are Static<> of the same schemas. Addresses are only bounded there:
 * parsePciAddress checks them, so a bad one answers PT_ERR_INVALID_ADDRESS like everywhere else.
 */
import * as api from '../schema/api.js';

export { SIM_WRITE_OPS } from '../schema/api.js';

export const ClaimBody = api.ClaimBodySchema;
export type ClaimBody = api.ClaimBody;

export const ReleaseBody = api.ReleaseBodySchema;
export type ReleaseBody = api.ReleaseBody;

export const SimModuleBody = api.SimModuleBodySchema;
export type SimModuleBody = api.SimModuleBody;

export const SimRmmodBody = api.SimRmmodBodySchema;
export type SimRmmodBody = api.SimRmmodBody;

export const SimAvailableBody = api.SimAvailableBodySchema;
export type SimAvailableBody = api.SimAvailableBody;

export const SimFailLoadBody = api.SimFailLoadBodySchema;
export type SimFailLoadBody = api.SimFailLoadBody;

export const SimFailWriteBody = api.SimFailWriteBodySchema;
export type SimFailWriteBody = api.SimFailWriteBody;

export const SimDeviceBody = api.SimDeviceBodySchema;
export type SimDeviceBody = api.SimDeviceBody;
