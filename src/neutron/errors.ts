// Errors from talking to Neutron (or Keystone on its behalf). They keep Neutron's own error type
// (NeutronError.type), the HTTP status and message, so callers switch on `type`, never on text.
import { DriverError } from '../util/errors.js';

export class NeutronApiError extends DriverError {
  constructor(
    readonly httpStatus: number,
    readonly type: string,
    readonly detail: string,
    readonly method: string,
    readonly path: string,
  ) {
    super(`Neutron ${httpStatus} ${type}: ${detail}`);
  }

  /** True for 404s (Neutron's *NotFound error types all come as 404). */
  get isNotFound(): boolean {
    return this.httpStatus === 404;
  }

  /** Returns a copy whose message also says what we were doing and what the user can do. */
  explain(doing: string, hint?: string): NeutronApiError {
    const e = new NeutronApiError(this.httpStatus, this.type, this.detail, this.method, this.path);
    e.message = `${this.message} (while ${doing})${hint ? `. ${hint}` : ''}`;
    return e;
  }
}

/** Neutron (or Keystone) could not be reached or did not answer in time. */
export class NeutronUnavailableError extends DriverError {
  /** No answer within the deadline (as opposed to a refused or dropped connection). */
  timedOut = false;

  constructor(
    readonly method: string,
    readonly path: string,
    reason: string,
  ) {
    super(
      `Neutron unreachable: ${method} ${path} failed: ${reason}. Check that neutron-server is running and [neutron] in kuryr.conf points at it`,
    );
  }
}

export class KeystoneAuthError extends DriverError {}

/** Parses either Neutron's `{"NeutronError": {...}}` or keystonemiddleware's `{"error": {...}}`. */
export function parseErrorBody(status: number, text: string): { type: string; detail: string } {
  try {
    const body = JSON.parse(text) as Record<string, unknown>;
    const ne = body.NeutronError as { type?: string; message?: string } | undefined;
    if (ne && typeof ne === 'object') return { type: ne.type ?? 'NeutronError', detail: ne.message ?? '' };
    const ke = body.error as { title?: string; message?: string } | undefined;
    if (ke && typeof ke === 'object')
      return { type: (ke.title ?? 'Error').replace(/\s+/g, ''), detail: ke.message ?? '' };
  } catch {
    // not JSON: fall through to the raw text
  }
  return {
    type: status >= 500 ? 'ServerError' : 'HTTPError',
    detail: text.trim().slice(0, 300) || `HTTP ${status}`,
  };
}
