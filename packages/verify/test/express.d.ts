/** The few Express 5 types the tests use (the package ships no types; @types/express is not installed). */
declare module 'express' {
  import type { Server } from 'node:http';
  namespace express {
    interface Request {
      body?: unknown;
      get(name: string): string | undefined;
    }
    interface Response {
      statusCode: number;
      locals: Record<string, unknown>;
      status(code: number): Response;
      json(body: unknown): Response;
      on(event: string, listener: () => void): Response;
    }
    type Handler = (req: Request, res: Response, next: (err?: unknown) => void) => void;
    interface Express {
      post(path: string, ...handlers: Handler[]): Express;
      listen(port: number, host: string): Server;
    }
  }
  interface ExpressFactory {
    (): express.Express;
    json(): express.Handler;
  }
  const express: ExpressFactory;
  export default express;
}
