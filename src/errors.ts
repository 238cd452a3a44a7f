/**
 * Stable error codes. Each code maps once to a CLI exit code and an HTTP status; docs/errors.md
 * lists them. Messages may change between releases, codes may not.
 */
export const errorCodes = {
  PT_ERR_INVALID_ADDRESS: { exit: 2, http: 400, retryable: false },
  PT_ERR_INVALID_ARGUMENT: { exit: 2, http: 400, retryable: false },
  PT_ERR_DEVICE_NOT_FOUND: { exit: 3, http: 404, retryable: false },
  PT_ERR_NOT_CLAIMED: { exit: 3, http: 404, retryable: false },
  PT_ERR_GROUP_NOT_VIABLE: { exit: 4, http: 409, retryable: false },
  PT_ERR_HOST_CRITICAL: { exit: 4, http: 409, retryable: false },
  PT_ERR_NO_IOMMU_GROUP: { exit: 4, http: 409, retryable: false },
  PT_ERR_DEVICE_IN_USE: { exit: 4, http: 409, retryable: true },
  PT_ERR_DEVICE_CHANGED: { exit: 4, http: 409, retryable: false },
  PT_ERR_HAS_VFS: { exit: 4, http: 409, retryable: false },
  PT_ERR_DEVICE_NOT_READY: { exit: 4, http: 409, retryable: true },
  PT_ERR_MODULE_UNAVAILABLE: { exit: 5, http: 503, retryable: true },
  PT_ERR_BIND_FAILED: { exit: 5, http: 500, retryable: true },
  PT_ERR_RELEASE_FAILED: { exit: 5, http: 500, retryable: true },
  PT_ERR_UNBIND_TIMEOUT: { exit: 5, http: 504, retryable: true },
  PT_ERR_SYSFS_WRITE: { exit: 5, http: 500, retryable: true },
  PT_ERR_SYSFS_READ: { exit: 5, http: 500, retryable: true },
  PT_ERR_KERNEL_REFUSED: { exit: 5, http: 409, retryable: true },
  PT_ERR_STORE_CORRUPT: { exit: 6, http: 500, retryable: false },
  PT_ERR_STORE_IO: { exit: 6, http: 500, retryable: true },
  PT_ERR_STORE_CONFLICT: { exit: 6, http: 409, retryable: false },
  PT_ERR_STORE_LOCKED: { exit: 6, http: 409, retryable: true },
  PT_ERR_TOPOLOGY_INVALID: { exit: 2, http: 400, retryable: false },
  PT_ERR_IMPORT_INVALID: { exit: 2, http: 400, retryable: false },
  PT_ERR_IMPORT_TOO_LARGE: { exit: 2, http: 413, retryable: false },
  PT_ERR_AGENT_UNREACHABLE: { exit: 7, http: 503, retryable: true },
  PT_ERR_AGENT_UNRESPONSIVE: { exit: 9, http: 504, retryable: true },
  PT_ERR_AGENT_BUSY: { exit: 7, http: 503, retryable: true },
  PT_ERR_NO_ROUTE: { exit: 2, http: 404, retryable: false },
  PT_ERR_REQUEST_TOO_LARGE: { exit: 2, http: 413, retryable: false },
  PT_ERR_UNSAFE_PATH: { exit: 8, http: 403, retryable: false },
  PT_ERR_PERMISSION: { exit: 8, http: 403, retryable: false },
  PT_ERR_UNAUTHENTICATED: { exit: 8, http: 401, retryable: false },
  PT_ERR_CSRF: { exit: 8, http: 403, retryable: false },
  PT_ERR_HOST_NOT_ALLOWED: { exit: 8, http: 403, retryable: false },
  PT_ERR_DOCTOR_FAILED: { exit: 1, http: 500, retryable: false },
  PT_ERR_INTERNAL: { exit: 70, http: 500, retryable: false },
} as const;

export type ErrorCode = keyof typeof errorCodes;

export class PtError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown>; retryable?: boolean } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PtError';
    this.code = code;
    this.retryable = options.retryable ?? errorCodes[code].retryable;
    this.details = options.details ?? {};
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, retryable: this.retryable, ...this.details };
  }
}

export function isPtError(e: unknown): e is PtError {
  return e instanceof PtError;
}

/** The errno name of a Node system error (ENODEV, EBUSY, ...), or undefined. */
export function errnoOf(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const code = e.code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** An error shaped like the ones node:fs throws, so callers treat real and simulated hosts alike. */
export class SysError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(`${code}: ${message}`);
    this.name = 'SysError';
    this.code = code;
  }
}

export function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}
