// Module hooks (run on Node's hooks thread) for module-load-recorder.mjs: every module URL the
// process loads is appended, one a line, to the file named at registration.
import { appendFileSync } from 'node:fs';

let out;

export function initialize(data) {
  out = data.out;
}

export async function load(url, context, nextLoad) {
  appendFileSync(out, `${url}\n`);
  return nextLoad(url, context);
}
