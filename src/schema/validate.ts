import type { Static, TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

/** One failed rule: where in the input (a JSON pointer, `/` for the root) and what is wrong. */
export interface SchemaIssue {
  path: string;
  message: string;
}

export interface Checker<T extends TSchema> {
  readonly schema: T;
  check(raw: unknown): raw is Static<T>;
  /** The first few issues, for an error message; empty when the value is valid. */
  issues(raw: unknown, max?: number): SchemaIssue[];
}

/**
 * A compiled checker for a schema. The schema is the single source: the TypeScript type comes
 * from Static<T>, the validation from the compiled code, and the JSON Schema itself is what
 * fastify and CRDs are fed.
 */
export function checker<T extends TSchema>(schema: T): Checker<T> {
  const compiled = TypeCompiler.Compile(schema);
  return {
    schema,
    check: (raw: unknown): raw is Static<T> => compiled.Check(raw),
    issues: (raw: unknown, max = 3) => {
      const out: SchemaIssue[] = [];
      for (const e of compiled.Errors(raw)) {
        out.push({ path: e.path === '' ? '/' : e.path, message: e.message });
        if (out.length >= max) break;
      }
      return out;
    },
  };
}

/** "at /claims: must be object" for error messages. */
export function describeIssues(issues: SchemaIssue[]): string {
  return issues.map((i) => `at ${i.path}: ${i.message}`).join('; ');
}
