/**
 * JSON Schemas of the API's request bodies, under the names the routes use. They are the
 * schema layer's (src/schema/api.ts): the request types and the validation come from one source.
 */
export {
  ClaimBodySchema as claimBody,
  ReleaseBodySchema as releaseBody,
  SimModuleBodySchema as simModuleBody,
  SimRmmodBodySchema as simRmmodBody,
  SimAvailableBodySchema as simAvailableBody,
  SimFailLoadBodySchema as simFailLoadBody,
  SimFailWriteBodySchema as simFailWriteBody,
  SimDeviceBodySchema as simDeviceBody,
} from '../schema/api.js';
