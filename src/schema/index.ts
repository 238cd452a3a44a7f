/**
 * The schema layer: one typebox schema for everything read from outside (state files, topology
 * files, API bodies; later the custom resources). Each is a JSON Schema (draft 7 with the
 * OpenAPI v3 subset CRDs accept, apart from the `patternProperties` of the state file's maps),
 * the TypeScript type is Static<typeof Schema>, and checker() compiles the validation.
 */
export * from './api.js';
export * from './names.js';
export * from './state.js';
export * from './topology.js';
export { checker, describeIssues, type Checker, type SchemaIssue } from './validate.js';
