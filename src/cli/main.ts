/** Entry point of `bin/slipway`: parse, report usage errors plainly, serve, exit with the right code. */

import { CommanderError, parseCommandLine, UsageError } from './options.js';
import { createLogger } from '../log.js';
import { serve } from './serve.js';
import { packageVersion } from '../pkg.js';

async function main(argv: string[]): Promise<number> {
  let plan;
  try {
    plan = parseCommandLine(argv, packageVersion());
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version exit 0; commander already printed the message for errors.
      return e.exitCode;
    }
    if (e instanceof UsageError) {
      process.stderr.write(`slipway: ${e.message}\nTry 'slipway --help' for more information.\n`);
      return 1;
    }
    throw e;
  }
  const log = createLogger(plan.logLevel);
  try {
    return await serve(plan, log);
  } catch (e) {
    const err = e as Error & { code?: string };
    log.fatal({ code: err.code }, err.message);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`slipway: internal error: ${(e as Error).stack ?? e}\n`);
    process.exit(70);
  },
);
