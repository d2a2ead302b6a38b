/**
 * Entry point of bin/slipway-slirp4netns (as dist/cli/slirp4netnsMain.js, and as the entry of the
 * dist/slirp4netns.bundle.cjs bundle): run the front end of slirp4netns.ts, exit with its code.
 */
import { basename } from 'node:path';
import { main } from './slirp4netns.js';

main(process.argv.slice(2), basename(process.env['SLIPWAY_ARGV0'] ?? 'slipway-slirp4netns')).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`slipway-slirp4netns: internal error: ${(e as Error).stack ?? e}\n`);
    process.exit(70);
  },
);
