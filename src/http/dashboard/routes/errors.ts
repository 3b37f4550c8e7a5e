// Errors the routes raise on purpose: each is one line for the person who sent the request.
export class BadRequest extends Error {
  readonly statusCode = 400;
  constructor(message: string) {
    super(message);
    this.name = 'BadRequest';
  }
}
