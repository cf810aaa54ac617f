// Errors that reach Docker. Every message says what failed and, where we know, what to do.
// The HTTP status is what the plugin answers; Docker only shows the message.

export class DriverError extends Error {
  constructor(
    message: string,
    readonly status = 500,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** The request is well-formed JSON but asks for something we cannot do (bad option, bad CIDR...). */
export class InvalidRequestError extends DriverError {
  constructor(message: string) {
    super(message, 400);
  }
}

/** A resource the request refers to does not exist (in Neutron or on the host). */
export class NotFoundError extends DriverError {
  constructor(message: string) {
    // Never 404: Docker takes a 404 to mean "this plugin lacks the method" and silently ignores it.
    super(message, 500);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
